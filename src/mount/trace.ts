// Access traces (docs/FORMAT.md, "Access traces"): which chunks a mount's readers asked for, in the
// order they first did, recorded by one run (`snapdir trace record`, or `mount --record-trace`) and
// stored beside the image under refs/traces/<snapshot ID>/<view>, so that later mounts of the same view
// fetch those chunks ahead in that order, before the program asks (stargz's landmark file, Nydus's
// prefetch table). A trace only speeds things up: a missing, stale or damaged one costs nothing but
// the fetches it names. The record as a store holds it is store/traces.ts; this is the view's part.
import { formatPlatform } from '../oci/platform.js'
import type { ViewOptions } from './views.js'

/** The view's part of a trace key: what tells two traces of one snapshot apart. */
export function viewKey(view: ViewOptions): string {
  if (view.view === 'layer' || view.view === 'tree') return view.view
  const parts: string[] = [view.view]
  if (view.image !== undefined) parts.push(`image=${view.image}`)
  if (view.platform !== undefined) parts.push(`platform=${formatPlatform(view.platform)}`)
  return encodeURIComponent(parts.join(';'))
}
