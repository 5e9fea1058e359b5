// The registry tests' token server as a process of its own (started by test/helpers/token-server.ts):
// a test that runs a tool synchronously (spawnSync of skopeo or the CLI) blocks its own event loop,
// and a token server inside the test process could then never answer that tool.
// GET /token?service=…&scope=… (https://distribution.github.io/distribution/spec/auth/token/): with
// Basic credentials of a known user, an RS256 JWT granting the requested scopes (less any denied);
// anonymous, a token granting nothing; wrong credentials, 401. GET /stats: what it issued and refused.
// The JWT header carries the signing certificate in `x5c`, which docker-registry 2.8 verifies against
// auth.token.rootcertbundle (distribution registry/auth/token/token.go, VerifySigningKey: x5c, jwk,
// or a libtrust `kid`).
// argv[2]: JSON { users, service, issuer, expiresIn, deny: [{ user, repository }], keyFile, certFile }
import { createPrivateKey, randomBytes, sign, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'

const options = JSON.parse(process.argv[2])
const key = createPrivateKey(readFileSync(options.keyFile))
const certDer = new X509Certificate(readFileSync(options.certFile)).raw.toString('base64')
const issued = []
let refused = 0
const b64url = (data) => Buffer.from(data).toString('base64url')

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x')
  if (url.pathname === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ issued, refused }))
    return
  }
  let user = ''
  const auth = req.headers.authorization
  if (auth !== undefined) {
    const m = /^Basic (.+)$/.exec(auth)
    const decoded = m ? Buffer.from(m[1], 'base64').toString('utf8') : ''
    const colon = decoded.indexOf(':')
    const name = decoded.slice(0, colon)
    if (colon < 0 || !Object.hasOwn(options.users, name) || options.users[name] !== decoded.slice(colon + 1)) {
      refused++
      res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'bad credentials' }] }))
      return
    }
    user = name
  }
  const scopes = url.searchParams.getAll('scope')
  const access = scopes.flatMap((scope) => {
    const [type, name, actions] = scope.split(':')
    if (type !== 'repository' || !name || !actions || user === '') return []
    if ((options.deny ?? []).some((d) => d.user === user && d.repository === name)) return []
    return [{ type, name, actions: actions.split(',') }]
  })
  const now = Math.floor(Date.now() / 1000)
  const expiresIn = options.expiresIn ?? 300
  const header = { typ: 'JWT', alg: 'RS256', x5c: [certDer] }
  const claims = { iss: options.issuer, sub: user, aud: options.service, exp: now + expiresIn, nbf: now - 5, iat: now, jti: randomBytes(8).toString('hex'), access }
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`
  const token = `${signingInput}.${b64url(sign('sha256', Buffer.from(signingInput), key))}`
  issued.push([...scopes].sort().join(' '))
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, access_token: token, expires_in: expiresIn, issued_at: new Date(now * 1000).toISOString() }))
})
server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${server.address().port}\n`))
process.on('SIGTERM', () => process.exit(0))
