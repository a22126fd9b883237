/**
 * Seek-bar preview figures for one file: parts, sprites, bytes and the decode/encode/send times of
 * web/src/lib/previews.ts in Debian's Chromium against a running backend (CHUNKSTREAM_URL).
 * Usage: node --import tsx bench/previews.ts FILE [TARGET_PART_SECONDS=4]
 */
import { backendUp } from '../e2e/helpers/app.ts';
import { BASE_URL, launch } from '../e2e/helpers/browser.ts';
import { labScript, runLab } from '../e2e/helpers/previews-lab.ts';

const [file, seconds = '4'] = process.argv.slice(2);
if (!file) throw new Error('usage: bench/previews.ts FILE [TARGET_PART_SECONDS]');
if (!(await backendUp())) throw new Error(`backend not reachable at ${BASE_URL}`);
const browser = await launch();
try {
  const page = await browser.context.newPage();
  const r = await runLab(page, await labScript(), file, Number(seconds));
  console.log(JSON.stringify(r));
} finally {
  await browser.close();
}
