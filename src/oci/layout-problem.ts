// What is wrong with an image's files, in a sentence that starts with the file or blob concerned
// ("index.json is not valid JSON: …"). The readers and the document walker throw these; the boundary
// that knows which image it was (a layout or archive on disk, a stored snapshot) turns them into its
// one-line error, so every problem is worded once whatever the image is read from.
import { SnapdirError, sourceError } from '../util/errors.js'

export class LayoutProblem extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'LayoutProblem'
  }
}

/** A blob the layout does not have; told apart because foreign layers may be absent. */
export class MissingBlobProblem extends LayoutProblem {
  constructor(message: string) {
    super(message)
    this.name = 'MissingBlobProblem'
  }
}

/** Throws the problem `why` says. */
export function fail(why: string): never {
  throw new LayoutProblem(why)
}

/**
 * `err` as the one-line error of the image `shownAs` names ("OCI image layout DIR", "snapshot 3fa1…"),
 * when it is a problem with the image; any other error as it is.
 */
export function imageError(err: unknown, code: 'ERR_SOURCE' | 'ERR_IMAGE', shownAs: string, data: Record<string, unknown>): unknown {
  if (!(err instanceof LayoutProblem)) return err
  if (code === 'ERR_SOURCE') return sourceError(shownAs, err.message, { cause: err, data })
  return new SnapdirError(code, `${shownAs}: ${err.message}`, { cause: err, data })
}

/** ERR_SOURCE naming an OCI image layout on disk as the user gave it. */
export function layoutError(err: unknown, layout: string): unknown {
  return imageError(err, 'ERR_SOURCE', `OCI image layout ${layout}`, { layout })
}

/** JSON.parse with the document named in the problem; its message is one line already. */
export function parseJson(data: Buffer, what: string): unknown {
  try {
    return JSON.parse(data.toString('utf8')) as unknown
  } catch (err) {
    throw new LayoutProblem(`${what} is not valid JSON: ${(err as Error).message}`)
  }
}
