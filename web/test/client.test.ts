/** Small client pieces: the session request body, fingerprints, the bandwidth pacer, retries. */
import assert from 'node:assert/strict';
import { openAsBlob } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { analyzeFile } from '../src/lib/analyze.ts';
import { ApiError, withRetry } from '../src/lib/api.ts';
import { fingerprintFile } from '../src/lib/fingerprint.ts';
import { Pacer } from '../src/lib/pacer.ts';
import { planSegments } from '../src/lib/planner.ts';
import { sessionRequest } from '../src/lib/request.ts';
import { makeClip, makeTempDir } from './helpers/media.ts';

let dir = '';
let cleanup: () => Promise<void> = async () => {};
let clip = '';
before(async () => {
  ({ dir, cleanup } = await makeTempDir('chunkstream-client-'));
  clip = await makeClip(join(dir, 'a.mp4'), { seconds: 6, x264params: 'keyint=30' });
});
after(() => cleanup());

describe('POST /api/videos body', () => {
  it('has exactly the fields of docs/api.md (the server denies unknown fields)', async () => {
    const blob = await openAsBlob(clip);
    const analysis = await analyzeFile(blob, { fileName: '/some/dir/talk.mp4' });
    const plan = planSegments(analysis.tracks, { targetDuration: 2 });
    const req = sessionRequest(analysis, plan, 'v1-abc');
    assert.deepEqual(Object.keys(req).sort(), ['file_name', 'fingerprint', 'slots', 'tracks']);
    assert.equal(req.file_name, 'talk.mp4');
    assert.deepEqual(Object.keys(req.tracks[0]!).sort(), ['codec', 'height', 'id', 'init_size', 'kind', 'presentation_time_offset', 'timescale', 'width']);
    // ffmpeg writes language 'und' (left out) and its default handler name (no label); the one audio track is the default
    assert.deepEqual(Object.keys(req.tracks[1]!).sort(), ['channels', 'codec', 'default', 'id', 'init_size', 'kind', 'presentation_time_offset', 'sample_rate', 'timescale']);
    assert.equal(req.tracks[1]!.default, true);
    assert.equal(req.tracks[0]!.init_size, analysis.tracks[0]!.initSegment.byteLength);
    assert.equal(req.slots.length, plan.slots.length);
    for (const s of req.slots) for (const t of s.tracks) assert.deepEqual(Object.keys(t).sort(), ['duration', 'size', 'start']);
    // contiguous per track, as the API requires
    for (let t = 0; t < req.tracks.length; t++) {
      for (let i = 1; i < req.slots.length; i++) {
        const prev = req.slots[i - 1]!.tracks[t]!;
        assert.equal(req.slots[i]!.tracks[t]!.start, prev.start + prev.duration);
      }
    }
    assert.ok(JSON.stringify(req).length < 100_000);
  });
});

describe('fingerprint', () => {
  it('is stable, short, and changes with size, name or sampled content', async () => {
    const bytes = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 7) & 0xff);
    const a = await fingerprintFile(new Blob([bytes]), 'x.mp4');
    assert.equal(a, await fingerprintFile(new Blob([bytes]), 'x.mp4'));
    assert.ok(a.length <= 128);
    assert.notEqual(a, await fingerprintFile(new Blob([bytes]), 'y.mp4'));
    assert.notEqual(a, await fingerprintFile(new Blob([bytes.subarray(1)]), 'x.mp4'));
    const mid = bytes.slice();
    mid[mid.length >> 1]! ^= 1;
    assert.notEqual(a, await fingerprintFile(new Blob([mid]), 'x.mp4'));
  });
});

describe('bandwidth pacer', () => {
  it('spaces bodies so the average rate matches the limit, across parallel callers', async () => {
    const pacer = new Pacer(800_000); // 100 kB/s
    const t0 = performance.now();
    await Promise.all([pacer.take(10_000), pacer.take(10_000), pacer.take(10_000)]); // 30 kB -> 300 ms
    const ms = performance.now() - t0;
    assert.ok(ms >= 290 && ms < 500, `took ${ms} ms`);
    const free = new Pacer(null);
    const t1 = performance.now();
    await free.take(1e9);
    assert.ok(performance.now() - t1 < 20);
  });
});

describe('retries', () => {
  it('retries network errors and 5xx with backoff, not 4xx', async () => {
    let calls = 0;
    const retries: number[] = [];
    const r = await withRetry(
      async () => {
        calls++;
        if (calls === 1) throw new TypeError('Failed to fetch');
        if (calls === 2) throw new ApiError(503, 'internal', 'internal error');
        return 'ok';
      },
      { onRetry: (_e, attempt, delay) => retries.push(delay), maxDelayMs: 50 },
    );
    assert.equal(r, 'ok');
    assert.equal(calls, 3);
    assert.equal(retries.length, 2);
    let c4 = 0;
    await assert.rejects(
      withRetry(async () => {
        c4++;
        throw new ApiError(400, 'invalid_plan', 'bad');
      }),
      ApiError,
    );
    assert.equal(c4, 1);
  });
});
