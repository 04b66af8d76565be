// ESLint for the circuit viewer's own scripts (sparse_lens/visualization/static/*.js; vendor/ excluded).
// `make lint-js` installs ESLint here (npm ci) and runs it; tests/visualization/test_javascript.py runs it
// when it is installed and checks every script's syntax with node otherwise.
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2020,
      sourceType: "script",
      globals: { ...globals.browser, d3: "readonly", CircuitsVis: "readonly" },
    },
    rules: { "no-unused-vars": ["error", { args: "none" }] },
  },
];
