// OCI chain IDs (image-spec config.md, "Layer ChainID"): the name containerd gives the committed
// snapshot of an image's layers up to N. ChainID(L0) = DiffID(L0); ChainID(L0..n) =
// sha256(ChainID(L0..n-1) + " " + DiffID(Ln)).
import { createHash } from 'node:crypto'

export function chainId(diffIds: readonly string[]): string {
  let chain = diffIds[0]!
  for (const d of diffIds.slice(1)) chain = `sha256:${createHash('sha256').update(`${chain} ${d}`).digest('hex')}`
  return chain
}
