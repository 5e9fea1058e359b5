// Where serve listens: --listen HOST:PORT ([v6]:PORT for IPv6, PORT or :PORT for loopback), and
// whether that is loopback only: anything else serves the store to the network, which serve does
// only with --htpasswd or when told --insecure-public.
import net from 'node:net'
import { UsageError } from '../util/errors.js'

export interface ListenAddress {
  host: string
  port: number
}

export const DEFAULT_LISTEN = '127.0.0.1:5000'

export function parseListen(value: string): ListenAddress {
  const bad = (why: string): never => {
    throw new UsageError(`--listen ${JSON.stringify(value)}: ${why}; expected HOST:PORT, e.g. 127.0.0.1:5000 or [::1]:5000`)
  }
  let host: string
  let port: string
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(value)
  if (v6) {
    host = v6[1]!
    port = v6[2] ?? '5000'
    if (net.isIPv6(host) === false) bad(`${host} is not an IPv6 address`)
  } else if (/^:?\d+$/.test(value)) {
    host = '127.0.0.1'
    port = value.replace(':', '')
  } else {
    const colon = value.lastIndexOf(':')
    if (colon < 0) bad('no port')
    host = value.slice(0, colon)
    port = value.slice(colon + 1)
    if (host.includes(':')) bad('an IPv6 address goes in brackets')
  }
  if (host === '') bad('no host')
  if (!/^\d+$/.test(port) || Number(port) > 65535) bad(`${JSON.stringify(port)} is not a port (0 to 65535; 0 picks a free one)`)
  return { host, port: Number(port) }
}

/** Whether only this machine can reach `host`: localhost, 127.0.0.0/8, ::1. */
export function isLoopback(host: string): boolean {
  if (host === 'localhost' || host === '::1') return true
  return net.isIPv4(host) && host.startsWith('127.')
}

/** How a URL writes the address (IPv6 in brackets). */
export function formatHost(host: string): string {
  return net.isIPv6(host) ? `[${host}]` : host
}
