// The one shape of every raw DEFLATE encoder (apart from compressor.ts so that the families and the gzip
// container can name it without importing the list of families).

/**
 * A raw DEFLATE encoder for one stream: each call returns the bytes produced so far. The async forms
 * run on the libuv pool, so the JS thread goes on meanwhile; one call at a time, sync or async, each
 * awaited before the next.
 */
export interface DeflateEncoder {
  write(input: Buffer): Buffer
  end(): Buffer
  writeAsync(input: Buffer): Promise<Buffer>
  endAsync(): Promise<Buffer>
}
