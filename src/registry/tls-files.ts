// The TLS material a registry connection trusts and presents, from the files users already have:
// a PEM file of CA certificates (--ca-file), and a certificate directory as containers/image reads
// one (skopeo's --cert-dir, docker's /etc/docker/certs.d/HOST): every `*.crt` is a CA certificate;
// `NAME.cert` with `NAME.key` is a client certificate and its key (each needs the other)
// (https://github.com/containers/image/blob/main/pkg/tlsclientconfig/tlsclientconfig.go).
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { rootCertificates } from 'node:tls'
import { errnoText, isErrno, UsageError } from '../util/errors.js'

export interface TlsFiles {
  /** CA certificates (PEM), the system's among them; undefined: the system's alone */
  ca?: string[]
  /** a client certificate and its key (PEM) */
  cert?: string
  key?: string
}

/** Reads `caFile` and `certDir` (either may be absent); a file that cannot be read is a UsageError naming it. */
export function readTlsFiles(caFile?: string, certDir?: string): TlsFiles {
  const extra: string[] = []
  const out: TlsFiles = {}
  if (caFile !== undefined) extra.push(readPem(caFile, 'the CA file'))
  if (certDir !== undefined) {
    let names: string[]
    try {
      names = readdirSync(certDir).sort()
    } catch (err) {
      throw new UsageError(`cannot read the certificate directory ${certDir}: ${isErrno(err) ? errnoText(err) : String(err)}`)
    }
    for (const name of names) {
      const file = path.join(certDir, name)
      if (name.endsWith('.crt')) extra.push(readPem(file, 'the CA certificate'))
      else if (name.endsWith('.cert')) {
        const key = `${name.slice(0, -'.cert'.length)}.key`
        if (!names.includes(key)) throw new UsageError(`the client certificate ${file} has no key ${key} beside it`)
        if (out.cert !== undefined) throw new UsageError(`${certDir} holds more than one client certificate (*.cert); keep one`)
        out.cert = readPem(file, 'the client certificate')
        out.key = readPem(path.join(certDir, key), 'the client key')
      } else if (name.endsWith('.key') && !names.includes(`${name.slice(0, -'.key'.length)}.cert`)) {
        throw new UsageError(`the client key ${file} has no certificate ${name.slice(0, -'.key'.length)}.cert beside it`)
      }
    }
  }
  if (extra.length > 0) out.ca = [...rootCertificates, ...extra]
  return out
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${file}: ${isErrno(err) ? errnoText(err) : String(err)}`)
  }
}
