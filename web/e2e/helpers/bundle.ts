/** A TypeScript entry point bundled into one script a test page can run (an IIFE, no imports). */
import { build } from 'esbuild';

export async function bundleForPage(entryPath: string): Promise<string> {
  const out = await build({
    entryPoints: [entryPath],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
  return out.outputFiles[0]!.text;
}
