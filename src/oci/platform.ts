// Platforms as image indexes describe them (image-spec image-index.md, "platform"), written on the
// command line as os/arch[/variant], the form docker, skopeo and containerd use.
import { UsageError } from '../util/errors.js'
import { isObject } from './descriptor.js'

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

/** `--platform linux/arm64/v8` → its parts; a bad form is a usage error naming the option. */
export function parsePlatform(text: string, option = '--platform'): Platform {
  const parts = text.split('/')
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
    throw new UsageError(`${option} ${JSON.stringify(text)} is not os/arch[/variant] (e.g. linux/amd64, linux/arm64/v8)`)
  }
  const [os, architecture, variant] = parts as [string, string, string | undefined]
  return variant === undefined ? { os, architecture } : { os, architecture, variant }
}

/** Node's names for CPUs, in GOARCH spelling as images use them. */
const GOARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64', loong64: 'loong64' }

/** The platform of this machine, which a runtime here would pick from a multi-platform image. */
export function hostPlatform(): Platform {
  return { os: process.platform, architecture: GOARCH[process.arch] ?? process.arch }
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, ...(p.variant ? [p.variant] : [])].join('/')
}

/** The platform a descriptor of an index names, or null when it names none. */
export function descriptorPlatform(descriptor: unknown): Platform | null {
  const p = isObject(descriptor) ? descriptor.platform : undefined
  if (!isObject(p) || typeof p.os !== 'string' || typeof p.architecture !== 'string') return null
  return typeof p.variant === 'string' ? { os: p.os, architecture: p.architecture, variant: p.variant } : { os: p.os, architecture: p.architecture }
}

/** A wanted platform without a variant takes any variant; with one, only that. */
export function platformMatches(have: Platform, want: Platform): boolean {
  return have.os === want.os && have.architecture === want.architecture && (want.variant === undefined || have.variant === want.variant)
}
