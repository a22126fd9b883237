/**
 * A 3-hour recording: the uploader's analysis, planner and segmenter (bench/segment-page.ts, the
 * same code the page runs, no network) take it whole — every part of every track built as the
 * uploader builds it — with the renderer's memory bounded by the sample count, not the file.
 * Issue 10's bound for this (the segmentation benchmark): ≤ 400 MB. The real upload's figure
 * (≤ 256 MB, a 3-hour 720p file) is bench/upload-memory.ts, in docs/benchmarks.md.
 */
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { makeClip, makeTempDir, sh } from '../test/helpers/media.ts';
import { sampleMemory } from './helpers/app.ts';
import { launch } from './helpers/browser.ts';
import { bundleForPage } from './helpers/bundle.ts';

const MiB = 1024 ** 2;
const here = fileURLToPath(new URL('.', import.meta.url));

interface SegmentBench {
  analyze(): Promise<{ slots: number; segments: number; bytes: number; analyzeMs: number }>;
  segmentAll(readBack: boolean): Promise<{ ms: number; bytes: number; segments: number }>;
}

describe('a 3-hour file', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    tmp = await makeTempDir('chunkstream-e2e-long-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('is analysed and cut into every part with the renderer under 400 MB', { timeout: 300_000 }, async () => {
    const clip = await makeClip(join(tmp.dir, 'clip.mp4'), { seconds: 60, x264params: 'keyint=60' });
    const file = join(tmp.dir, 'three-hours.mp4');
    await sh('ffmpeg', ['-v', 'error', '-y', '-stream_loop', '179', '-i', clip, '-c', 'copy', file]);
    const size = (await stat(file)).size;
    const page = await browser.context.newPage();
    await page.setContent('<!doctype html><title>3-hour file</title><input type="file" id="f">');
    await page.addScriptTag({ content: await bundleForPage(join(here, '../bench/segment-page.ts')) });
    await page.setInputFiles('#f', file);
    const memory = await sampleMemory(browser.context, page, browser.userDataDir, 250);
    const plan = await page.evaluate(() => (globalThis as unknown as { __segmentBench: SegmentBench }).__segmentBench.analyze());
    const built = await page.evaluate(() => (globalThis as unknown as { __segmentBench: SegmentBench }).__segmentBench.segmentAll(false));
    const peak = await memory.stop();
    console.log(
      `3 h file, ${(size / MiB).toFixed(0)} MiB: ${plan.slots} parts analysed in ${plan.analyzeMs.toFixed(0)} ms, ${built.segments} segments built in ${(built.ms / 1000).toFixed(1)} s; ` +
        `peak renderer anonymous RSS ${(peak.anon / MiB).toFixed(0)} MiB (VmRSS ${(peak.rss / MiB).toFixed(0)} MiB), JS heap ${(peak.heap / MiB).toFixed(1)} MiB, ${peak.samples} samples`,
    );
    assert.ok(plan.slots >= 1000, `${plan.slots} parts for 3 hours`);
    assert.equal(built.segments, plan.segments, 'every part of every track built');
    assert.equal(built.bytes, plan.bytes, 'the built segments have the planned sizes');
    assert.ok(peak.samples > 3, 'memory was sampled while it ran');
    assert.ok(peak.anon > 0 && peak.anon < 400e6, `renderer anonymous RSS peak ${(peak.anon / MiB).toFixed(0)} MiB`);
    await page.close();
  });
});
