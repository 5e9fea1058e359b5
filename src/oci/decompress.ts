// The compressions image blobs and archives come in, told by their magic bytes rather than by a name
// or media type (as containerd's DecompressStream does), and a streaming zstd decoder: node 20's zlib
// has none, so zstd-napi's streaming context does it.
import zstd from 'zstd-napi/binding.js'

export type Compression = 'none' | 'gzip' | 'zstd'

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b])
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd])

/** The compression whose magic `head` (the first 4 bytes or fewer) starts with. */
export function compressionOf(head: Buffer): Compression {
  if (head.subarray(0, 2).equals(GZIP_MAGIC)) return 'gzip'
  if (head.subarray(0, 4).equals(ZSTD_MAGIC)) return 'zstd'
  return 'none'
}

/** A decoding stage failed on the data itself; the message says how, for the caller to name the blob. */
export class StageError extends Error {}

/** How a compressed stream was bad, when `err` says so (a StageError, or node:zlib's Z_* errors). */
export function streamProblem(err: Error): string | null {
  if (err instanceof StageError) return err.message
  const code = (err as NodeJS.ErrnoException).code
  // node:zlib's Z_BUF_ERROR is its "unexpected end of file"
  if (typeof code === 'string' && code.startsWith('Z_')) return `the gzip stream is ${code === 'Z_BUF_ERROR' ? 'truncated' : 'corrupt'} (${err.message})`
  return null
}

/** zstd frames in, their content out; a corrupt or truncated stream is a StageError. */
export async function* zstdDecompress(input: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const dctx = new zstd.DCtx()
  const outSize = zstd.dStreamOutSize()
  let inFrame = false
  for await (const chunk of input) {
    let src = chunk
    for (;;) {
      const dst = Buffer.allocUnsafe(outSize)
      let ret: number, produced: number, consumed: number
      try {
        ;[ret, produced, consumed] = dctx.decompressStream(dst, src)
      } catch (err) {
        throw new StageError(`the zstd stream is corrupt (${(err as Error).message})`, { cause: err })
      }
      src = src.subarray(consumed)
      inFrame = ret !== 0
      if (produced > 0) yield dst.subarray(0, produced)
      if (src.length === 0 && (produced < dst.length || ret === 0)) break
    }
  }
  if (inFrame) throw new StageError('the zstd stream is truncated (it ends inside a frame)')
}
