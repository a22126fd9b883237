/**
 * Peak renderer memory during a real upload of a multi-hour 720p file (issue 10: ≤ 256 MB for a
 * 3-hour 720p file), default settings, against the running backend (CHUNKSTREAM_URL).
 *
 *   cd web && CHUNKSTREAM_URL=http://127.0.0.1:8080 node --import tsx bench/upload-memory.ts [--hours 3] [--query previews=0]
 *
 * The file: a 60 s 1280×720 30 fps H.264 + 48 kHz AAC clip looped with `-c copy` (what matters for
 * memory is the sample count, ~270k samples per hour, not the picture). Baseline, same run: the
 * same uploader page before a file is picked. Stages: analysis until the share link is shown,
 * then the upload until complete (GC is not forced between them).
 */
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { makeClip, makeTempDir, sh } from '../test/helpers/media.ts';
import { backendUp, getStatus, sampleMemory, waitForComplete, waitForLink } from '../e2e/helpers/app.ts';
import type { MemoryPeaks, UploadPage } from '../e2e/helpers/app.ts';
import { BASE_URL, launch } from '../e2e/helpers/browser.ts';

const MiB = 1024 ** 2;
const hoursArg = process.argv.indexOf('--hours');
const hours = hoursArg > 0 ? Number(process.argv[hoursArg + 1]) : 3;
/** uploader page settings (URL parameters) other than the defaults, e.g. `previews=0` */
const queryArg = process.argv.indexOf('--query');
const query = queryArg > 0 ? `?${process.argv[queryArg + 1]}` : '';

if (!(await backendUp())) throw new Error(`backend not reachable at ${BASE_URL}`);
const tmp = await makeTempDir('chunkstream-bench-upload-memory-');
const browser = await launch();
try {
  const clip = await makeClip(join(tmp.dir, 'clip.mp4'), { seconds: 60, width: 1280, height: 720, bitrate: '600k', x264params: 'keyint=60' });
  const file = join(tmp.dir, `${hours}h-720p.mp4`);
  await sh('ffmpeg', ['-v', 'error', '-y', '-stream_loop', String(Math.round(hours * 60) - 1), '-i', clip, '-c', 'copy', file]);
  const size = (await stat(file)).size;

  const page = await browser.context.newPage();
  const logs: string[] = [];
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  await page.goto(`${BASE_URL}/${query}`);
  const memory = await sampleMemory(browser.context, page, browser.userDataDir);
  await new Promise((r) => setTimeout(r, 3000));
  const idle = memory.mark();
  const t0 = Date.now();
  await page.setInputFiles('#file', file);
  const up: UploadPage = { page, creates: [], logs };
  const { videoId } = await waitForLink(up, 120_000);
  const linkMs = Date.now() - t0;
  const analysis = memory.mark();
  await waitForComplete(up, 3_600_000);
  const uploadS = (Date.now() - t0) / 1000 - linkMs / 1000;
  const upload = memory.mark();
  const total = await memory.stop();
  const status = await getStatus(videoId);
  if (!status.complete) throw new Error('the upload did not complete');
  const row = (name: string, p: MemoryPeaks): string =>
    `| ${name} | ${(p.anon / MiB).toFixed(0)} MiB | ${(p.rss / MiB).toFixed(0)} MiB | ${(p.heap / MiB).toFixed(1)} MiB | ${p.samples} |`;
  console.log(`\n${hours} h 720p file${query ? ` (${query})` : ', default settings'}: ${(size / MiB).toFixed(0)} MiB, ${status.slot_count} parts; link after ${linkMs} ms, upload ${uploadS.toFixed(0)} s (${((size * 8) / uploadS / 1e6).toFixed(0)} Mbit/s)`);
  console.log('| stage | peak anonymous RSS | peak RSS | peak JS heap | samples |');
  console.log('|---|---|---|---|---|');
  console.log(row('baseline: the page before a file is picked', idle));
  console.log(row('analysis until the link is shown', analysis));
  console.log(row('upload until complete', upload));
  console.log(row('whole run', total));
  console.log(`file size (baseline): ${(size / MiB).toFixed(0)} MiB; peak RSS / file size ${(total.rss / size).toFixed(3)}`);
} finally {
  await browser.close();
  await tmp.cleanup();
}
