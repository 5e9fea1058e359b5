// Where layer expansion keeps small files until it packs them (layer-expand.ts): packing groups them
// in path order, a tar gives them in archive order, so their bytes wait in a temporary file.
import type { FileHandle } from 'node:fs/promises'
import fsp from 'node:fs/promises'
import path from 'node:path'
import { SnapdirError } from '../util/errors.js'

/** An append-only temporary file, made on first use and removed by close. */
export class SpillFile {
  private dir: string | null = null
  private fh: FileHandle | null = null
  private length = 0

  constructor(private readonly parent: string) {}

  /** Appends a stream; returns the offset it starts at. */
  async append(data: AsyncIterable<Buffer>): Promise<number> {
    if (this.fh === null) {
      this.dir = await fsp.mkdtemp(path.join(this.parent, 'snapdir-layer-'))
      this.fh = await fsp.open(path.join(this.dir, 'spill'), 'w+')
    }
    const start = this.length
    for await (const piece of data) {
      let done = 0
      while (done < piece.length) done += (await this.fh.write(piece, done, piece.length - done, this.length + done)).bytesWritten
      this.length += piece.length
    }
    return start
  }

  async read(into: Buffer, at: number, length: number, offset: number): Promise<void> {
    let got = 0
    while (got < length) {
      const n = (await this.fh!.read(into, at + got, length - got, offset + got)).bytesRead
      if (n === 0) throw new SnapdirError('ERR_INTERNAL', 'internal error: a layer spill file is shorter than written')
      got += n
    }
  }

  async close(): Promise<void> {
    const { fh, dir } = this
    this.fh = null
    this.dir = null
    await fh?.close()
    if (dir !== null) await fsp.rm(dir, { recursive: true, force: true })
  }
}
