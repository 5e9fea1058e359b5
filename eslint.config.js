// Type-aware linting: above all, no promise left floating and none passed where a callback is expected
// (a forgotten await in a store write is a silent lost write).
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'bench/', 'test/tools/', 'eslint.config.js', 'rolldown.config.mjs'] },
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
)
