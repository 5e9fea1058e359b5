// Every endpoint serve answers, in one table; the server tries them in order, first match wins.
//
// To add endpoints: write them in a file of their own as a `readonly Route[]` (route.ts says what a
// route is: methods, an anchored path pattern whose named groups become ctx.params, `write: true`
// when it changes the store, and a handler that answers through ctx.res or throws a RegistryError of
// errors.ts), and spread it in here. Authentication, --read-only, the `name` check, error bodies and
// the access log are the server's, so a route does none of them.
import { manifestWriteRoutes } from './manifest-write-routes.js'
import { readRoutes } from './read-routes.js'
import type { Route } from './route.js'
import { stagedReadRoutes } from './staged-read-routes.js'
import { uploadRoutes } from './upload-routes.js'
import type { WriteSide } from './write-side.js'

export const ROUTES: readonly Route[] = [...readRoutes]

/**
 * Every route, the write side's too: uploads, manifest pushes and deletes, and reads that see what
 * was pushed but not yet taken into the store; their state is kept in `write`.
 */
export function routesWithWrites(write: WriteSide): readonly Route[] {
  return [...uploadRoutes(write), ...manifestWriteRoutes(write), ...stagedReadRoutes(write), ...ROUTES]
}
