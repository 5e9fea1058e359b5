// The import rules of src/, checked by scripts/test.sh (so `make test` and CI fail on a violation):
// no cycle between files, and the folders of src/ import downwards only, in the layer order of
// DESIGN.md. Type-only imports count: a type import upwards still ties a lower layer to a higher one.
//
//   cli -> serve -> snapshot | snapshotter -> sync | mount -> oci -> ingest -> store -> registry -> format -> chunk -> util
//
// serve/ (the OCI Distribution server over a store) sits under cli and above the commands it may
// share code with (snapshot: a push of what it is sent; sync, oci, store: what it serves).
//
// registry/ (the OCI Distribution client) needs only util and format, and sits low so that anything
// that reads or writes images (oci, sync, snapshot) can use it.
//
// A folder may import its own files and any folder below it, never one above it; folders of one rank
// (snapshot and snapshotter, sync and mount) sit side by side and do not import each other. A new folder under src/ must be given its place here.

/** Each folder of src/ with its rank: higher ranks may import lower ones only. */
const LAYERS = {
  cli: 9,
  serve: 8.5,
  snapshot: 8,
  snapshotter: 8,
  sync: 7,
  mount: 7,
  oci: 6,
  ingest: 5,
  store: 4,
  registry: 3.5,
  format: 3,
  chunk: 2,
  util: 1,
}

const folders = Object.keys(LAYERS)
const any = (names) => `^src/(${names.join('|')})/`

/**
 * Known exceptions, each naming the one import it allows, why, and who removes it. A rule with an
 * exception is checked everywhere else as usual. Keep this list empty on main whenever possible.
 */
const EXCEPTIONS = []

const orList = (...res) => res.filter(Boolean).join('|') || undefined

/** A rule, split so that each exception's one import (from -> to) is let through and nothing else. */
function withExceptions(rule) {
  const mine = EXCEPTIONS.filter((e) => e.rule === rule.name)
  if (mine.length === 0) return [rule]
  const fromNot = orList(rule.from.pathNot, ...mine.map((e) => e.from))
  return [
    { ...rule, from: { ...rule.from, pathNot: fromNot } },
    ...mine.map((e) => ({
      ...rule,
      comment: `${rule.comment} [known exception: ${e.why}]`,
      from: { ...rule.from, path: e.from },
      to: { ...rule.to, pathNot: orList(rule.to.pathNot, ...mine.filter((o) => o.from === e.from).map((o) => o.to)) },
    })),
  ]
}

/** One rule per folder: nothing it imports may sit at its own rank or above, but for itself. */
const layerRules = folders
  .map((folder) => ({
    folder,
    above: folders.filter((other) => other !== folder && LAYERS[other] >= LAYERS[folder]),
    below: folders.filter((other) => LAYERS[other] < LAYERS[folder]),
  }))
  .filter(({ above }) => above.length > 0)
  .map(({ folder, above, below }) => ({
    name: `layer-${folder}`,
    comment: `src/${folder}/ may import only ${below.length ? below.join(', ') : 'its own files'}: the layer order of DESIGN.md`,
    severity: 'error',
    from: { path: `^src/${folder}/` },
    to: { path: any(above) },
  }))

const rules = [
  {
    name: 'no-circular',
    comment: 'a cycle between files: one of them must move, or the shared part must move down a layer',
    severity: 'error',
    from: { path: '^src/' },
    to: { circular: true },
  },
  ...layerRules,
  {
    name: 'layer-unknown-folder',
    comment: `every file under src/ sits in one of the layer folders (${folders.join(', ')}): give a new folder its place in .dependency-cruiser.cjs`,
    severity: 'error',
    from: { path: '^src/', pathNot: any(folders) },
    to: {},
  },
  {
    name: 'layer-unknown-target',
    comment: `every file under src/ sits in one of the layer folders (${folders.join(', ')}): give a new folder its place in .dependency-cruiser.cjs`,
    severity: 'error',
    from: { path: '^src/' },
    to: { path: '^src/', pathNot: any(folders) },
  },
  {
    name: 'not-to-unresolvable',
    comment: 'an import that resolves to no file or package',
    severity: 'error',
    from: {},
    to: { couldNotResolve: true },
  },
  {
    name: 'no-orphans',
    comment: 'a file under src/ that nothing imports and that imports nothing: dead, or forgotten',
    severity: 'error',
    from: { orphan: true, path: '^src/', pathNot: '\\.d\\.ts$' },
    to: {},
  },
  {
    name: 'src-not-to-test',
    comment: 'the shipped code never imports tests or benchmarks',
    severity: 'error',
    from: { path: '^src/' },
    to: { path: '^(test|bench)/' },
  },
  {
    name: 'src-not-to-dev-dep',
    comment: 'a devDependency is not installed where snapdir is: src/ may import dependencies only',
    severity: 'error',
    from: { path: '^src/' },
    to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
  },
]

module.exports = {
  forbidden: rules.flatMap(withExceptions),
  options: {
    doNotFollow: { path: 'node_modules' },
    // type-only imports are dependencies too (see the top of this file)
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.mjs', '.cjs', '.d.ts', '.json'],
    },
  },
}
