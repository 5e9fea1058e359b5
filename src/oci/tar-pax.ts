// PAX extended headers and the tar header fields layer expansion reads through them (layer-expand.ts):
// records decoded byte-exact, ids, mtime with nanoseconds, xattrs, device numbers.
// POSIX pax: https://pubs.opengroup.org/onlinepubs/9699919799/utilities/pax.html#tag_20_92_13_03
import type { extract } from 'tar-stream'
import { SnapdirError } from '../util/errors.js'

/** The part of tar-stream's Extract losslessPax reaches into. */
interface ExtractInternals {
  _header: { type: string | null } | null
  _pax: Record<string, string> | null
  _paxGlobal: Record<string, string> | null
  _decodeLongHeader(buf: Buffer): void
}

/**
 * tar-stream decodes PAX records as UTF-8, which mangles binary xattr values (security.capability)
 * and names that are not UTF-8. This swaps in a byte-exact decoder (values as latin1 strings, one
 * char per byte, like the names with filenameEncoding 'latin1') for PAX headers, keeping tar-stream's
 * merge of global into local records. It also returns the global records, which tar-stream applies
 * only to entries that have local ones. Reaches into tar-stream 3.2 (pinned); the layer tests fail
 * if that changes.
 */
export function losslessPax(ex: ReturnType<typeof extract>): () => Record<string, string> {
  const internals = ex as unknown as ExtractInternals
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the Extract as `this` below
  const original = internals._decodeLongHeader
  if (typeof original !== 'function') throw new SnapdirError('ERR_INTERNAL', 'internal error: tar-stream internals changed (_decodeLongHeader is gone)')
  let global: Record<string, string> = {}
  internals._decodeLongHeader = function (this: ExtractInternals, buf: Buffer): void {
    const type = this._header?.type
    if (type === 'pax-header') this._pax = { ...global, ...decodePax(buf) }
    else if (type === 'pax-global-header') this._paxGlobal = global = { ...global, ...decodePax(buf) }
    else original.call(this, buf)
  }
  return () => global
}

/** PAX extended header records, `<length> <key>=<value>\n` (POSIX pax, "pax Extended Header"). */
export function decodePax(buf: Buffer): Record<string, string> {
  const out: Record<string, string> = {}
  let pos = 0
  while (pos < buf.length) {
    if (buf[pos] === 0) break // NUL padding after the last record
    const space = buf.indexOf(0x20, pos)
    const len = space < 0 ? NaN : Number(buf.toString('latin1', pos, space))
    if (!Number.isSafeInteger(len) || len <= space - pos + 2 || pos + len > buf.length || buf[pos + len - 1] !== 0x0a) {
      throw new Error(`malformed PAX record at byte ${pos}`)
    }
    const record = buf.subarray(space + 1, pos + len - 1)
    const eq = record.indexOf(0x3d)
    if (eq <= 0) throw new Error(`malformed PAX record at byte ${pos}`)
    out[record.toString('latin1', 0, eq)] = record.toString('latin1', eq + 1)
    pos += len
  }
  return out
}

/** A PAX numeric field (uid, gid), where it is a safe integer. */
export function paxNumber(v: string | undefined): number | undefined {
  if (v === undefined || !/^\d+$/.test(v)) return undefined
  const n = Number(v)
  return Number.isSafeInteger(n) ? n : undefined
}

/** mtime in seconds and nanoseconds: PAX `mtime` (decimal seconds, maybe negative) or the header's. */
export function mtimeOf(headerMtime: Date, pax: Record<string, string>): { mtimeSec: number; mtimeNsec: number } {
  const m = pax.mtime === undefined ? null : /^(-?)(\d+)(?:\.(\d*))?$/.exec(pax.mtime)
  if (m === null) return { mtimeSec: Math.floor(headerMtime.getTime() / 1000), mtimeNsec: 0 }
  const whole = Number(m[2])
  const nsec = Number(((m[3] ?? '') + '000000000').slice(0, 9))
  if (m[1] === '' || nsec === 0) return { mtimeSec: m[1] === '' ? whole : -whole, mtimeNsec: nsec }
  return { mtimeSec: -whole - 1, mtimeNsec: 1_000_000_000 - nsec }
}

/** xattrs from `SCHILY.xattr.NAME` (GNU tar, Go, containerd) or, failing that, libarchive's encoding. */
export function xattrsOf(pax: Record<string, string>): Array<[Buffer, Buffer]> {
  const found = new Map<string, Buffer>()
  for (const [key, value] of Object.entries(pax)) {
    if (key.startsWith('SCHILY.xattr.')) found.set(key.slice('SCHILY.xattr.'.length), Buffer.from(value, 'latin1'))
  }
  for (const [key, value] of Object.entries(pax)) {
    if (!key.startsWith('LIBARCHIVE.xattr.')) continue
    // name percent-encoded, value base64 (libarchive archive_write_set_format_pax.c)
    const name = percentDecode(key.slice('LIBARCHIVE.xattr.'.length))
    if (!found.has(name)) found.set(name, Buffer.from(value, 'base64'))
  }
  return [...found].map(([name, value]) => [Buffer.from(name, 'latin1'), value])
}

/** `%XX` escapes to bytes, as a latin1 string (one char per byte). */
function percentDecode(s: string): string {
  return s.replace(/%([0-9a-fA-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)))
}

/** st_rdev from major and minor, as glibc's makedev encodes them on Linux. */
export function makedev(major: number, minor: number): number {
  return (major & 0xfff) * 0x100 + (minor & 0xff) + Math.floor(minor / 0x100) * 0x100000 + Math.floor(major / 0x1000) * 0x1000_0000_0000
}
