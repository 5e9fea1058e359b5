import type { FileHandle } from 'node:fs/promises'
import { ChunkStream, type RawChunk } from '../chunk/chunk-stream.js'
import type { Chunker } from '../chunk/chunker.js'
import { native } from '../chunk/native.js'
import { SnapdirError } from '../util/errors.js'

const BLOCK = 4 * 1024 * 1024

/**
 * Cuts one open file into chunks, reading `size` bytes. Files with fewer allocated bytes than their
 * size are walked extent by extent (SEEK_DATA/SEEK_HOLE) so holes are never read nor held in memory.
 */
export async function* readChunks(fh: FileHandle, size: number, sparse: boolean, chunker: Chunker, what: string): AsyncGenerator<RawChunk> {
  const stream = new ChunkStream(chunker)
  for await (const piece of extents(fh, size, sparse)) {
    if (piece.hole) {
      yield* stream.pushZeros(piece.length)
      continue
    }
    let pos = piece.start
    const end = piece.start + piece.length
    while (pos < end) {
      const want = Math.min(BLOCK, end - pos)
      // a fresh buffer per read: the chunks yielded view it until the caller is done with them
      const buf = Buffer.allocUnsafe(want)
      let got = 0
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, pos + got)
        if (bytesRead === 0) {
          throw new SnapdirError('ERR_SOURCE', `${what} shrank while being read (expected ${size} bytes)`)
        }
        got += bytesRead
      }
      pos += want
      yield* stream.push(buf)
    }
  }
  yield* stream.end()
}

interface Extent {
  start: number
  length: number
  hole: boolean
}

async function* extents(fh: FileHandle, size: number, sparse: boolean): AsyncGenerator<Extent> {
  if (!sparse || !native) {
    if (size > 0) yield { start: 0, length: size, hole: false }
    return
  }
  let pos = 0
  while (pos < size) {
    let data = native.seekData(fh.fd, pos)
    if (data < 0 || data > size) data = size
    if (data > pos) yield { start: pos, length: data - pos, hole: true }
    if (data >= size) return
    let hole = native.seekHole(fh.fd, data)
    if (hole < 0 || hole > size) hole = size
    yield { start: data, length: hole - data, hole: false }
    pos = hole
  }
}
