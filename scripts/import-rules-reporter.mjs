// dependency-cruiser reporter for scripts/test.sh: one line per broken import rule, then one summary
// line; the exit status is the number of errors (as depcruise's own reporters).
//   npx depcruise src --output-type "plugin:$PWD/scripts/import-rules-reporter.mjs"

/** @param {import('dependency-cruiser').ICruiseResult} result */
export default function report(result) {
  const { summary } = result
  // a rule with known exceptions is split in several of the same name (.dependency-cruiser.cjs): the
  // first is the rule itself, with its own comment
  const comments = new Map()
  for (const r of summary.ruleSetUsed?.forbidden ?? []) if (!comments.has(r.name)) comments.set(r.name, r.comment)
  const lines = summary.violations.map((v) => {
    const path = v.cycle?.length ? [v.from, ...v.cycle.map((c) => c.name)] : v.via?.length ? [v.from, ...v.via.map((c) => c.name)] : v.to && v.to !== v.from ? [v.from, v.to] : [v.from]
    const why = comments.get(v.rule.name)
    return `imports: ${v.rule.severity} ${v.rule.name}: ${path.join(' -> ')}${why ? ` (${why})` : ''}`
  })
  const counts = `${summary.totalCruised} files, ${summary.totalDependenciesCruised} imports`
  lines.push(summary.error + summary.warn > 0
    ? `imports: ${summary.error} errors, ${summary.warn} warnings in ${counts} (rules: .dependency-cruiser.cjs)`
    : `imports: ${counts}, every import rule holds`)
  return { output: lines.join('\n') + '\n', exitCode: summary.error }
}
