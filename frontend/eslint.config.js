// Lint for the browser app: eslint's and typescript-eslint's recommended rules, with type information
// for the app's sources (tsconfig.json) so that promises nobody awaits are caught. `npm run lint` runs
// `tsc --noEmit -p .` first.
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

export default defineConfig(
  { ignores: ["dist/", "node_modules/"] },
  js.configs.recommended,
  tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // An async function passed as a callback (an event listener, `reload`) is the house pattern: each
      // one catches its own errors and shows them (showError). Promises our own code drops are still
      // errors (no-floating-promises), and so are promises in conditions.
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: { arguments: false } }],
      // `_name` marks a parameter kept for the signature (as tsc's noUnusedParameters allows).
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
    },
  },
  {
    // Tests and tooling are outside tsconfig.json (the app's build): lint them without type information.
    files: ["**/*.test.ts", "**/*.js", "**/*.mjs"],
    extends: [tseslint.configs.disableTypeChecked],
  },
  {
    files: ["scripts/**/*.mjs", "eslint.config.js"],
    languageOptions: { globals: { process: "readonly", console: "readonly", URL: "readonly" } },
  },
);
