// A corpus of many small files, built the same way on every machine: the tree where a command's
// memory grows with the number of entries rather than with their bytes (issue 15: 200,000 files).
// Plain ESM like the scripts; bench/memory.mjs builds it once under $SNAPDIR_BENCH_DIR.

import fs from 'node:fs'
import path from 'node:path'

/** mulberry32: small, fast and the same everywhere; the corpus depends only on the seed. */
function prng(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const WORDS = ('the of and to in is that for it as with was on be by at this are from or an which not have but all were ' +
  'when there can more one their other into has been will some what about these only would first such two time ' +
  'snapshot chunk store tree mount layer image file directory content hash object part entry index push pull')
  .split(' ')

/** 16 MiB of text-like bytes (words, numbers, lines) that files take slices of: compressible, rarely repeated. */
function textPool(random, size = 16 << 20) {
  const pool = Buffer.alloc(size)
  let at = 0
  while (at < size) {
    const piece = random() < 0.15 ? `${Math.floor(random() * 1e9).toString(16)} ` : `${WORDS[Math.floor(random() * WORDS.length)]}${random() < 0.08 ? '\n' : ' '}`
    at += pool.write(piece, at, 'latin1')
  }
  return pool
}

/**
 * The size of one file: most between a few bytes and 8 KiB (log-uniform, as source trees and
 * /usr/share are), one in 20 up to 60 KiB (still packed: below packMax), one in 50 empty.
 */
function fileSize(random) {
  const r = random()
  if (r < 0.02) return 0
  if (r < 0.07) return 8192 + Math.floor(random() * (60 << 10))
  return Math.floor(Math.exp(random() * Math.log(8192)))
}

/**
 * Builds `files` files under `root` (which must not exist): directories two and three levels deep
 * with 1 to 120 files each, names of varied length. Written to `root.partial` and renamed, so a
 * killed build leaves no tree that looks finished. Returns { files, dirs, bytes }.
 */
export function buildSmallFiles(root, { files = 200_000, seed = 15 } = {}) {
  const random = prng(seed)
  const pool = textPool(random)
  const partial = `${root}.partial`
  fs.rmSync(partial, { recursive: true, force: true })
  fs.mkdirSync(partial, { recursive: true })
  let made = 0
  let dirs = 0
  let bytes = 0
  for (let top = 0; made < files; top++) {
    const topDir = path.join(partial, `group-${top.toString().padStart(3, '0')}`)
    fs.mkdirSync(topDir)
    dirs++
    const subdirs = 4 + Math.floor(random() * 20)
    for (let s = 0; s < subdirs && made < files; s++) {
      let dir = path.join(topDir, `${WORDS[Math.floor(random() * WORDS.length)]}-${s}`)
      if (random() < 0.3) dir = path.join(dir, `nested-${Math.floor(random() * 1000)}`)
      fs.mkdirSync(dir, { recursive: true })
      dirs++
      const count = Math.min(files - made, 1 + Math.floor(random() * 120))
      for (let f = 0; f < count; f++) {
        const size = fileSize(random)
        const start = Math.floor(random() * (pool.length - size))
        const name = `${WORDS[Math.floor(random() * WORDS.length)]}_${made.toString(36)}${random() < 0.5 ? '.txt' : '.dat'}`
        const content = Buffer.from(pool.subarray(start, start + size))
        // the file's number at its start: no two files are the same, so dedup does not hide entries
        if (size >= 8) content.write(made.toString(16).padStart(8, '0'), 0, 'latin1')
        fs.writeFileSync(path.join(dir, name), content)
        made++
        bytes += size
      }
    }
  }
  fs.renameSync(partial, root)
  return { files: made, dirs, bytes }
}
