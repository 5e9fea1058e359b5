// Type-aware linting: above all, no promise left floating and none passed where a callback is expected
// (a forgotten await in a store write is a silent lost write).
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'test/tools/', 'eslint.config.js', 'rolldown.config.mjs'] },
  // plain-JS tool configs and scripts outside the TypeScript project (no types to check them with)
  { ignores: ['.dependency-cruiser.cjs', 'scripts/*.mjs'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
    },
  },
  {
    // bench/: plain ESM scripts (no build step) outside tsconfig's files, typed by inference. The
    // promise rules hold as everywhere; the no-unsafe-* family is off because untyped JSON and
    // options are `any` in plain JavaScript, where those rules flag every use. The default project
    // takes every bench script (25 now): past the cap, linting fails, so the cap has room to grow.
    files: ['bench/**/*.mjs'],
    languageOptions: {
      parserOptions: {
        projectService: {
          allowDefaultProject: ['bench/*.mjs', 'bench/lib/*.mjs'],
          maximumDefaultProjectFileMatchCount_THIS_WILL_SLOW_DOWN_LINTING: 48,
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
)
