// One RegistryClient per registry host for a command that talks to many images (sync --config): each
// registry's connections, token cache and rate limit are shared by all its images.
import { RegistryClient, type RegistryClientOptions } from './client.js'

export class RegistryClients {
  private readonly clients = new Map<string, RegistryClient>()

  /** `optionsFor(registry)` gives each registry's options (its credentials, TLS, rate) when first used. */
  constructor(private readonly optionsFor: (registry: string) => RegistryClientOptions = () => ({})) {}

  /** The client for `registry` (`host[:port]` as in image references), made on first use. */
  get(registry: string): RegistryClient {
    let c = this.clients.get(registry)
    if (!c) {
      c = new RegistryClient(registry, this.optionsFor(registry))
      this.clients.set(registry, c)
    }
    return c
  }

  /** Closes every client made; idempotent. */
  async close(): Promise<void> {
    const all = [...this.clients.values()]
    this.clients.clear()
    await Promise.all(all.map((c) => c.close()))
  }
}
