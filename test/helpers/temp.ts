// Temporary directories and file listings for any test; nothing here needs the CLI built.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach } from 'vitest'

const made: string[] = []
afterEach(() => {
  while (made.length) rmSync(made.pop()!, { recursive: true, force: true })
})

/** A fresh temporary directory, removed after the test. */
export function tempDir(prefix = 'snapdir-test-'): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix))
  made.push(d)
  return d
}

/**
 * All regular files under a directory, relative, sorted (for counting store objects); none if it does
 * not exist. In-process (no `find` to spawn): killWhen's checks call it while a command races on.
 */
export function listFiles(dir: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort()
}

/** Stored objects under dir (not the temporary files a killed writer leaves). */
export function countObjects(dir: string): number {
  return listFiles(dir).filter((f) => !f.includes('.tmp-')).length
}
