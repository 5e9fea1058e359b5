// Pagination of tags/list and _catalog (distribution-spec "Listing Tags"): `n` entries at most,
// those after `last` in lexical order, and a Link header to the next page when more remain, as
// docker-registry writes it: </v2/…?n=N&last=L>; rel="next".
import { RegistryError } from './errors.js'

export interface Page {
  items: string[]
  /** the Link header's value, when another page follows */
  link?: string
}

/** One page of `sorted` (lexically sorted) as the query of `url` asks; `path` is the endpoint's. */
export function paginate(sorted: readonly string[], url: URL, path: string): Page {
  const last = url.searchParams.get('last')
  const nParam = url.searchParams.get('n')
  let items = last === null ? [...sorted] : sorted.filter((s) => s > last)
  if (nParam === null) return { items }
  if (!/^\d{1,9}$/.test(nParam)) throw new RegistryError('UNSUPPORTED', { status: 400, message: `n=${nParam} is not a number of entries`, detail: { n: nParam } })
  const n = Number(nParam)
  const more = items.length > n
  items = items.slice(0, n)
  if (!more || items.length === 0) return { items }
  const next = new URLSearchParams({ n: String(n), last: items.at(-1)! })
  return { items, link: `<${path}?${next.toString()}>; rel="next"` }
}
