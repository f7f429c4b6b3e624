import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.cache/', '.data/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      'no-console': 'off',
    },
  },
  {
    // The storefront's pages run in the browser, oidc-client-ts's browser build (the global `oidc`) beside them.
    files: ['functions/storefront/pages/**/*.js'],
    languageOptions: {
      globals: Object.fromEntries(
        ['window', 'document', 'location', 'history', 'fetch', 'URL', 'URLSearchParams', 'console', 'sessionStorage', 'crypto', 'setTimeout', 'setInterval', 'clearInterval', 'oidc'].map((name) => [name, 'readonly']),
      ),
    },
  },
);
