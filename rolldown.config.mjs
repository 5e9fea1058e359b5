// The CLI as it ships: dist/bundle/, built from tsc's dist/ by `npm run build`. Node 20 loading the
// CLI as some 70 ES modules spent ~30 ms more on every command than loading a few bundled files
// (resolving, reading and linking each; more with a cold page cache): a tenth of a small push.
// Only our code, commander (which every command loads at start), and yaml and semver (sync --config
// reads its file with them: CommonJS of some 120 files between them, which cost each such run ~60 ms
// of CPU to resolve, read and compile one by one; bundled, one chunk loaded when the file is read) are
// bundled; packages with native addons (msgpackr, zstd-napi) find them relative to their own files,
// and the rest load lazily.
const bundled = ['commander', '@commander-js/extra-typings', 'yaml', 'semver']

export default {
  input: {
    main: 'dist/cli/main.js',
    // a worker thread's entry: worker-pool.ts starts it by this name, beside itself
    'chunk-worker': 'dist/ingest/chunk-worker.js',
  },
  platform: 'node',
  external: (id) => id.startsWith('node:') || (/^[^./]/.test(id) && !bundled.some((b) => id === b || id.startsWith(`${b}/`))),
  // Same depth under the repository as dist/chunk/: the native addon is found at ../../build from here.
  output: { dir: 'dist/bundle', format: 'esm', cleanDir: true },
}
