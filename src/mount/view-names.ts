/** The ways a mount can show a snapshot (views.ts builds each); apart so the CLI lists them without loading views. */
export const VIEWS = ['tree', 'rootfs', 'layers'] as const
export type ViewName = (typeof VIEWS)[number]
