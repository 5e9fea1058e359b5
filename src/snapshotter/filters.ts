// containerd's filter expressions (pkg/filters), as ListSnapshotsRequest.filters carries them:
//
//   filter    := selector ("," selector)*            every selector must match
//   selector  := fieldpath [op value]                no op: the field is present
//   fieldpath := field ("." field)*                  a field is a name or a quoted string
//   op        := "==" | "!=" | "~="                  ~= is a regular expression match
//   value     := quoted | characters up to "," or the end
//
// Quoted strings use double quotes (with backslash escapes) or, for regular expressions, slashes.
// A request's filters are alternatives: a snapshot is listed when it matches any of them.
import { SnapdirError } from '../util/errors.js'

type Op = '==' | '!=' | '~='

interface Selector {
  path: string[]
  op: Op | null
  value: string
  regex: RegExp | null
}

/** A parsed filter: a conjunction of selectors. */
export type Filter = Selector[]

/** Looks a field path up in an object: the value ('' when absent) and whether it is there. */
export type FieldLookup = (path: string[]) => { value: string; present: boolean }

function invalid(filter: string, at: number, what: string): SnapdirError {
  return new SnapdirError('ERR_INVALID_ARGUMENT', `filter ${JSON.stringify(filter)}: ${what} at offset ${at}`, { data: { filter, at } })
}

export function parseFilter(text: string): Filter {
  let i = 0
  const skipSpace = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++
  }
  const quoted = (): string => {
    const q = text[i]!
    const start = i
    i++
    let out = ''
    while (i < text.length && text[i] !== q) {
      if (text[i] === '\\' && i + 1 < text.length) {
        const next = text[i + 1]!
        // in a /regex/ only an escaped slash loses its backslash; the rest is the regex's own escape
        if (q === '/') out += next === '/' ? '/' : `\\${next}`
        else out += next === 'n' ? '\n' : next === 't' ? '\t' : next
        i += 2
      } else out += text[i++]
    }
    if (i >= text.length) throw invalid(text, start, 'unterminated quoted string')
    i++
    return out
  }
  const field = (): string => {
    skipSpace()
    if (text[i] === '"') return quoted()
    const start = i
    while (i < text.length && /[A-Za-z0-9_]/.test(text[i]!)) i++
    if (i === start) throw invalid(text, start, 'expected a field name')
    return text.slice(start, i)
  }
  const selectors: Selector[] = []
  for (;;) {
    const path = [field()]
    while (text[i] === '.') {
      i++
      path.push(field())
    }
    skipSpace()
    let op: Op | null = null
    let value = ''
    const two = text.slice(i, i + 2)
    if (two === '==' || two === '!=' || two === '~=') {
      op = two
      i += 2
      skipSpace()
      if (text[i] === '"' || text[i] === '/') value = quoted()
      else {
        const start = i
        while (i < text.length && text[i] !== ',') i++
        value = text.slice(start, i).trimEnd()
        if (value === '') throw invalid(text, start, 'expected a value')
      }
    }
    let regex: RegExp | null = null
    if (op === '~=') {
      try {
        regex = new RegExp(value)
      } catch (err) {
        throw invalid(text, i, `bad regular expression ${JSON.stringify(value)} (${(err as Error).message})`)
      }
    }
    selectors.push({ path, op, value, regex })
    skipSpace()
    if (i >= text.length) return selectors
    if (text[i] !== ',') throw invalid(text, i, `expected "," or the end, found ${JSON.stringify(text[i])}`)
    i++
  }
}

export function matchesFilter(filter: Filter, lookup: FieldLookup): boolean {
  return filter.every((s) => {
    const { value, present } = lookup(s.path)
    switch (s.op) {
      case null:
        return present
      case '==':
        return present && value === s.value
      case '!=':
        return value !== s.value
      case '~=':
        return s.regex!.test(value)
    }
  })
}

/** Whether any of `filters` matches; no filters match everything. */
export function matchesAny(filters: readonly Filter[], lookup: FieldLookup): boolean {
  return filters.length === 0 || filters.some((f) => matchesFilter(f, lookup))
}
