import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The build goes into the Python package; the control plane serves it at its root and adds
// <base href> at its mount point, so every asset URL is relative ("./assets/...").
export default defineConfig({
  plugins: [react()],
  base: "./",
  build: {
    outDir: "../apiary/control/webui",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
