// The one shape of every raw DEFLATE encoder (apart from compressor.ts so that the families and the gzip
// container can name it without importing the list of families).

/** A raw DEFLATE encoder for one stream: each call returns the bytes produced so far. */
export interface DeflateEncoder {
  write(input: Buffer): Buffer
  end(): Buffer
}
