// A blob answered from the store: whole (200) or one byte range (206, RFC 9110 "Range Requests"),
// streamed as it is regenerated and hashed (oci/stored-blobs.ts), with the store's chunks fetched
// ahead (oci/recipe-reader.ts). The digest is known only at the end, so the last piece sent is held
// back until the whole blob checked: a mismatch, or a store failing mid-blob, destroys the connection
// before the response is complete, and the client sees a failed transfer, never wrong bytes.
// A range is cut from the whole blob's stream, which runs to its end to be checked.
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { RegistryError } from './errors.js'
import type { ServedBlob } from './repository-images.js'
import type { RequestContext } from './route.js'

/** Bytes [start, end] of a blob, both inclusive, as a Range header names them. */
export interface ByteRange {
  start: number
  end: number
}

/**
 * The one range `header` asks for in a blob of `size` bytes; null to send it whole (no header, a
 * header not of one bytes range: RFC 9110 lets a server ignore those); 416 when no byte of the range
 * is there (the spec gives that status no code of its own: SIZE_INVALID says what is wrong).
 */
export function parseRange(header: string | undefined, size: number): ByteRange | null {
  if (header === undefined) return null
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (m === null || (m[1] === '' && m[2] === '')) return null
  let start: number
  let end: number
  if (m[1] === '') {
    // bytes=-N: the last N bytes
    start = Math.max(0, size - Number(m[2]))
    end = size - 1
  } else {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  }
  if (start >= size || start > end) {
    throw new RegistryError('SIZE_INVALID', { status: 416, message: `range ${header} is not satisfiable for a blob of ${size} bytes`, headers: { 'Content-Range': `bytes */${size}` } })
  }
  return { start, end }
}

/** Answers GET or HEAD of `blob`, whole or the range the request asks for. */
export async function sendBlob(ctx: RequestContext, blob: ServedBlob): Promise<void> {
  const { req, res } = ctx
  const range = parseRange(req.headers.range, blob.size)
  res.setHeader('Content-Type', 'application/octet-stream')
  res.setHeader('Docker-Content-Digest', blob.digest)
  res.setHeader('Accept-Ranges', 'bytes')
  res.setHeader('ETag', `"${blob.digest}"`)
  if (range !== null) {
    res.statusCode = 206
    res.setHeader('Content-Range', `bytes ${range.start}-${range.end}/${blob.size}`)
  }
  const start = range?.start ?? 0
  const end = range === null ? blob.size : range.end + 1
  res.setHeader('Content-Length', String(end - start))
  if (req.method === 'HEAD') {
    res.end()
    return
  }
  let sent = 0
  const source = ctx.blobCache ? ctx.blobCache.read(blob, start, end) : heldBack(blob.content(), start, end)
  const body = counted(source, (n) => (sent += n))[Symbol.asyncIterator]()
  // a blob that fails before its first byte (its recipe or first chunk damaged, the store down) is
  // answered as an error by the server: nothing was sent yet
  const first = await body.next()
  try {
    await pipeline(Readable.from(prepended(first, body), { objectMode: false }), res)
  } catch (err) {
    // the response is cut short either way (pipeline destroyed it); say why
    if ((err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE' && !res.writableFinished) {
      ctx.note({ aborted: 'the client closed the connection', sent })
      return
    }
    const why = err instanceof Error ? err.message : String(err)
    ctx.note({ aborted: why, blob: blob.digest, sent })
    ctx.warn(`blob ${blob.digest} (${blob.what}) in ${ctx.params.name}: response aborted after ${sent} of ${end - start} bytes: ${why}`, { blob: blob.digest, name: ctx.params.name })
  }
}

/**
 * The bytes [start, end) of `stream`, each piece passed on only once the next one came, and the last
 * only once `stream` ended without error (it checks the blob's digest at its end).
 */
async function* heldBack(stream: AsyncIterable<Buffer>, start: number, end: number): AsyncGenerator<Buffer> {
  let at = 0
  let held: Buffer | null = null
  for await (const piece of stream) {
    const from = Math.max(start - at, 0)
    const to = Math.min(end - at, piece.length)
    at += piece.length
    if (to <= from) continue
    if (held !== null) yield held
    held = from === 0 && to === piece.length ? piece : piece.subarray(from, to)
  }
  if (held !== null) yield held
}

/** `stream`, each piece counted through `onPiece` as it is passed on. */
async function* counted(stream: AsyncIterable<Buffer>, onPiece: (n: number) => void): AsyncGenerator<Buffer> {
  for await (const piece of stream) {
    onPiece(piece.length)
    yield piece
  }
}

/** `rest`, with the result `first` that was already taken from it in front. */
async function* prepended(first: IteratorResult<Buffer>, rest: AsyncIterator<Buffer>): AsyncGenerator<Buffer> {
  if (first.done === true) return
  try {
    yield first.value
    for (let r = await rest.next(); r.done !== true; r = await rest.next()) yield r.value
  } finally {
    // a response cut short stops the blob's stream too (its chunk fetches end)
    await rest.return?.()
  }
}
