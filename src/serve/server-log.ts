// serve's log on stderr: one access line per request when it ends (method, path, status, bytes, time,
// user, and what went wrong), and warnings for faults that are not the client's (a damaged blob, a
// store failing mid-response). Text for people, or with --json one JSON object per line.

export interface AccessEntry {
  remote: string
  user: string | null
  method: string
  path: string
  status: number
  /** body bytes written */
  bytes: number
  ms: number
  [field: string]: unknown
}

export interface ServerLog {
  access(entry: AccessEntry): void
  warn(message: string, fields?: Record<string, unknown>): void
  info(message: string, fields?: Record<string, unknown>): void
}

export function createServerLog(options: { json: boolean; write?: (line: string) => void }): ServerLog {
  const write = options.write ?? ((line: string) => void process.stderr.write(line))
  const time = (): string => new Date().toISOString()
  if (options.json) {
    const line = (value: Record<string, unknown>): void => write(`${JSON.stringify({ time: time(), ...value })}\n`)
    return {
      access: (entry) => line({ level: 'info', msg: 'request', ...entry }),
      warn: (message, fields = {}) => line({ level: 'warn', msg: message, ...fields }),
      info: (message, fields = {}) => line({ level: 'info', msg: message, ...fields }),
    }
  }
  return {
    access: ({ remote, user, method, path, status, bytes, ms, ...rest }) => {
      const extra = Object.entries(rest).map(([k, v]) => ` ${k}=${JSON.stringify(v)}`)
      write(`${time()} ${remote} ${user ?? '-'} "${method} ${path}" ${status} ${bytes} ${ms}ms${extra.join('')}\n`)
    },
    warn: (message) => write(`${time()} warning: ${message}\n`),
    info: (message) => write(`${time()} ${message}\n`),
  }
}
