import { defineConfig } from "vite";

// Django serves dist/ through whitenoise under /static/; index.html is returned by labseg.views.spa.
export default defineConfig({
  base: "/static/",
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: { proxy: { "/api": "http://127.0.0.1:8000", "/accounts": "http://127.0.0.1:8000" } },
  test: { environment: "node", include: ["src/**/*.test.ts"] },
} as never);
