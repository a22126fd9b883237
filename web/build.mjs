// Bundles the two pages into dist/: static files, served as they are (no CDN, no server logic).
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
// CHUNKSTREAM_WEB_OUT: another directory (two checkouts' e2e runs side by side)
const out = process.env.CHUNKSTREAM_WEB_OUT ?? join(here, 'dist');
const watch = process.argv.includes('--dev');

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await build({
  entryPoints: { uploader: join(here, 'src/uploader-page.ts'), watch: join(here, 'src/watch-page.ts') },
  outdir: out,
  bundle: true,
  format: 'esm',
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  platform: 'browser',
  target: ['chrome110', 'firefox115', 'safari16'],
  minify: !watch,
  sourcemap: true,
  legalComments: 'linked',
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
});
for (const f of ['index.html', 'watch.html', 'style.css']) await copyFile(join(here, 'src', f), join(out, f));
console.log(`built ${out}`);
