// Basic auth from an htpasswd file, bcrypt hashes only (`htpasswd -B`), as docker-registry's htpasswd
// auth takes them: a file with any other kind of hash (MD5 apr1, SHA1, crypt) is refused at start,
// naming the line, rather than a user being locked out later. A password checked once is remembered
// (by a hash of user, password and the user's bcrypt hash) so that a client sending it with every
// request costs one bcrypt, not one per request.
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import bcrypt from 'bcryptjs'
import { LRUCache } from 'lru-cache'
import { SnapdirError, isErrno } from '../util/errors.js'

const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/

export class Htpasswd {
  private readonly verified = new LRUCache<string, true>({ max: 1024, ttl: 10 * 60 * 1000 })

  private constructor(
    private readonly users: ReadonlyMap<string, string>,
    /** compared against when the user is unknown, so that an unknown user takes as long as a known one */
    private readonly decoy: string,
  ) {}

  /** Reads `file`: `user:bcrypt-hash` lines (blank lines and # comments skipped). */
  static async load(file: string): Promise<Htpasswd> {
    let text: string
    try {
      text = await readFile(file, 'utf8')
    } catch (err) {
      if (isErrno(err)) throw new SnapdirError('ERR_BAD_CONFIG', `--htpasswd ${file}: ${err.message}`, { cause: err })
      throw err
    }
    const users = new Map<string, string>()
    for (const [i, raw] of text.split('\n').entries()) {
      const line = raw.trim()
      if (line === '' || line.startsWith('#')) continue
      const colon = line.indexOf(':')
      const where = `--htpasswd ${file} line ${i + 1}`
      if (colon <= 0) throw new SnapdirError('ERR_BAD_CONFIG', `${where}: not user:hash`)
      const user = line.slice(0, colon)
      const hash = line.slice(colon + 1)
      if (!BCRYPT.test(hash)) throw new SnapdirError('ERR_BAD_CONFIG', `${where}: the password of ${JSON.stringify(user)} is not a bcrypt hash; make it with htpasswd -B`)
      users.set(user, hash)
    }
    if (users.size === 0) throw new SnapdirError('ERR_BAD_CONFIG', `--htpasswd ${file} has no users`)
    return new Htpasswd(users, users.values().next().value!)
  }

  /** The user an Authorization header authenticates, or null. */
  async check(authorization: string | undefined): Promise<string | null> {
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization ?? '')
    if (m === null) return null
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8')
    const colon = decoded.indexOf(':')
    if (colon < 0) return null
    const user = decoded.slice(0, colon)
    const password = decoded.slice(colon + 1)
    const hash = this.users.get(user)
    const key = createHash('sha256').update(`${user}\0${password}\0${hash ?? ''}`).digest('hex')
    if (hash !== undefined && this.verified.has(key)) return user
    const ok = await bcrypt.compare(password, hash ?? this.decoy)
    if (!ok || hash === undefined) return null
    this.verified.set(key, true)
    return user
  }
}
