import { defineConfig } from "vite";

// The hub serves the build from wiretide/hub/ui_dist at /, so Python users need no Node.
export default defineConfig({
  base: "./",
  build: {
    outDir: "../wiretide/hub/ui_dist",
    emptyOutDir: true,
    target: "es2022",
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` against a hub: WIRETIDE_HUB=http://127.0.0.1:8899 npm run dev
    proxy: {
      "/api": { target: process.env.WIRETIDE_HUB ?? "http://127.0.0.1:8899", ws: true },
    },
  },
});
