// The registry options push, pull and sync share, and what they make of them: RegistryClient options
// for one side of a copy. Credentials: --src-creds for the source registry, --dest-creds for the
// destination, --creds for whichever side has no credentials of its own; without any, docker's
// config.json, else anonymous (registry/credentials.ts). TLS likewise: --src-tls-verify and
// --src-cert-dir for the source, --dest-… for the destination, --tls-verify and --cert-dir for a side
// without its own (skopeo's names); --ca-file and the rate limit apply to every registry.
import type { Command } from '@commander-js/extra-typings'
import type { RegistryClientOptions } from '../registry/client.js'
import { parseCredentials } from '../registry/credentials.js'
import { UsageError } from '../util/errors.js'

export interface RegistryCliOptions {
  srcCreds?: string
  destCreds?: string
  creds?: string
  tlsVerify?: string
  srcTlsVerify?: string
  destTlsVerify?: string
  caFile?: string
  certDir?: string
  srcCertDir?: string
  destCertDir?: string
  registryRps?: string
}

export type RegistrySide = 'source' | 'destination'

/**
 * Adds the shared registry options to a command. (The caller's action states RegistryCliOptions in
 * the type of its options; commander's inferred types do not pass through a helper.)
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- any command, whatever its arguments and options
export function addRegistryOptions<C extends Command<any, any, any>>(command: C): C {
  command
    .option('--src-creds <user:pass>', 'credentials for the source registry (default: --creds, else docker config.json, else anonymous)')
    .option('--dest-creds <user:pass>', 'credentials for the destination registry (default: --creds, else docker config.json, else anonymous)')
    .option('--creds <user:pass>', 'credentials for any registry without its own --src-creds/--dest-creds')
    .option(
      '--tls-verify <bool>',
      "verify registries' TLS certificates (default true). Loopback registries (localhost, 127.0.0.0/8, ::1) are spoken to in plain HTTP, as docker does, " +
        'unless --tls-verify=true, a --cert-dir or a --ca-file is given for them (then HTTPS, verified, if they speak it); false: HTTPS without verification, and plain HTTP where the registry has no TLS (as skopeo)',
    )
    .option('--src-tls-verify <bool>', 'as --tls-verify, for the source registry only')
    .option('--dest-tls-verify <bool>', 'as --tls-verify, for the destination registry only')
    .option('--cert-dir <dir>', "directory of CA certificates (*.crt) to trust and a client certificate (NAME.cert with NAME.key) to present, as skopeo and docker's certs.d read one; for any registry")
    .option('--src-cert-dir <dir>', 'as --cert-dir, for the source registry only')
    .option('--dest-cert-dir <dir>', 'as --cert-dir, for the destination registry only')
    .option('--ca-file <file>', "PEM file of CA certificates to trust for registries, besides the system's")
    .option('--registry-rps <n>', 'at most this many requests per second to each registry')
  return command
}

/** RegistryClient options for the registry on `side` of a command, from its parsed options. */
export function registryClientOptions(opts: RegistryCliOptions, side: RegistrySide): RegistryClientOptions {
  const own = side === 'source' ? opts.srcCreds : opts.destCreds
  const ownName = side === 'source' ? '--src-creds' : '--dest-creds'
  const creds = own ?? opts.creds
  const out: RegistryClientOptions = {}
  if (creds !== undefined) out.creds = parseCredentials(creds, own !== undefined ? ownName : '--creds')
  const ownVerify = side === 'source' ? opts.srcTlsVerify : opts.destTlsVerify
  const verifyText = ownVerify ?? opts.tlsVerify
  const verify = verifyText === undefined ? undefined : parseBool(ownVerify !== undefined ? (side === 'source' ? '--src-tls-verify' : '--dest-tls-verify') : '--tls-verify', verifyText)
  const certDir = (side === 'source' ? opts.srcCertDir : opts.destCertDir) ?? opts.certDir
  if (certDir !== undefined) out.certDir = certDir
  if (opts.caFile !== undefined) out.caFile = opts.caFile
  if (verify === false) Object.assign(out, { tlsVerify: false, httpFallback: true })
  // told to verify, or what to trust: a loopback registry is asked in HTTPS first too (verified), and
  // in plain HTTP if it has no TLS (the other registry of a sync may be the one these are for)
  else if (verify === true || certDir !== undefined || opts.caFile !== undefined) out.httpFallback = true
  if (opts.registryRps !== undefined) {
    const rps = Number(opts.registryRps)
    if (!(rps > 0) || !Number.isFinite(rps)) throw new UsageError(`--registry-rps: expected a positive number of requests per second, got ${JSON.stringify(opts.registryRps)}`)
    out.rps = rps
  }
  return out
}

function parseBool(name: string, value: string): boolean {
  const v = value.trim().toLowerCase()
  if (['true', '1', 'yes', 'on'].includes(v)) return true
  if (['false', '0', 'no', 'off'].includes(v)) return false
  throw new UsageError(`${name}: expected true or false, got ${JSON.stringify(value)}`)
}
