// The registry options push, pull and sync share, and what they make of them: RegistryClient options
// for one side of a copy. Credentials: --src-creds for the source registry, --dest-creds for the
// destination, --creds for whichever side has no credentials of its own; without any, docker's
// config.json, else anonymous (registry/credentials.ts). TLS and the rate limit apply to every registry.
import type { Command } from '@commander-js/extra-typings'
import type { RegistryClientOptions } from '../registry/client.js'
import { parseCredentials } from '../registry/credentials.js'
import { UsageError } from '../util/errors.js'

export interface RegistryCliOptions {
  srcCreds?: string
  destCreds?: string
  creds?: string
  tlsVerify?: string
  caFile?: string
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
    .option('--tls-verify <bool>', 'verify registries\' TLS certificates (default true; loopback registries speak plain HTTP)')
    .option('--ca-file <file>', 'PEM file of CA certificates to trust for registries, besides the system\'s')
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
  if (opts.tlsVerify !== undefined) out.tlsVerify = parseBool('--tls-verify', opts.tlsVerify)
  if (opts.caFile !== undefined) out.caFile = opts.caFile
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
