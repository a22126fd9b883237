/**
 * Browser benchmarks (issue 4): real Chromium (Debian's) driving the real pages against a running
 * backend at CHUNKSTREAM_URL. A benchmark, not a test: it prints figures, each with a baseline
 * measured in this same run on this machine, and writes the rows to `--out <file>` (JSON list of
 * {id, name, value, unit, baseline, ratio, target, met, note?}; scripts/bench.sh merges them into
 * docs/benchmarks.md). See bench/README.md for what each figure means.
 *
 *   node --import tsx bench/run.ts [--quick] [--out results.json] [--only 1,2,3,4,5]
 */
import { writeFile, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { BrowserContext, Page } from 'playwright-core';
import { getStatus, rendererRss } from '../e2e/helpers/app.ts';
import { BASE_URL, launch } from '../e2e/helpers/browser.ts';
import { loopToSize, makeClip, makeTempDir, sh } from '../test/helpers/media.ts';
import {
  clearTrace,
  clockOffset,
  getTrace,
  median,
  MiB,
  openUploader,
  printTable,
  row,
  sleep,
  topLevelBoxes,
  waitForLink,
  waitForState,
} from './lib.ts';
import type { Row, TraceEntry } from './lib.ts';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const OUT = args.includes('--out') ? args[args.indexOf('--out') + 1] : undefined;
const ONLY = args.includes('--only') ? new Set(args[args.indexOf('--only') + 1]!.split(',')) : null;
const enabled = (n: string): boolean => !ONLY || ONLY.has(n);

/** the throttled uplink of benchmarks 1, 3 and 4 (bits/s) */
const BW = 8_000_000;
const SEG = 10;
const POSITIONS = [0.25, 0.5, 0.75];

const log = (m: string): void => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}`);

const rows: Row[] = [];

// ---- media ---------------------------------------------------------------------------------

interface Media {
  dir: string;
  cleanup(): Promise<void>;
  /** 60 s, 640x360 noise at ~1.2 Mbit/s + AAC 64k, 2 s GOP */
  base360: string | null;
  /** 30 min of base360 (stream_loop -c copy) */
  long360: string | null;
}

async function media(): Promise<Media> {
  const { dir, cleanup } = await makeTempDir('chunkstream-bench-');
  return { dir, cleanup, base360: null, long360: null };
}

async function base360(m: Media): Promise<string> {
  if (!m.base360) {
    log('encoding the 640x360 base clip…');
    m.base360 = await makeClip(join(m.dir, 'base360.mp4'), {
      seconds: 60,
      width: 640,
      height: 360,
      noise: true,
      bitrate: '1200k',
      x264params: 'keyint=60:min-keyint=60:scenecut=0',
    });
  }
  return m.base360;
}

async function loops(src: string, dst: string, times: number): Promise<string> {
  await sh('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-stream_loop', String(times - 1), '-i', src, '-c', 'copy', dst]);
  return dst;
}

async function long360(m: Media): Promise<string> {
  if (!m.long360) m.long360 = await loops(await base360(m), join(m.dir, 'long360.mp4'), 30);
  return m.long360;
}

// ---- page helpers --------------------------------------------------------------------------

const first = (t: TraceEntry[], pred: (e: TraceEntry) => boolean): TraceEntry | undefined => t.find(pred);

async function waitPlaying(viewer: Page, timeoutMs: number): Promise<void> {
  await viewer.waitForFunction(() => document.querySelector('video')!.currentTime > 0.5, null, { timeout: timeoutMs, polling: 50 });
}

/** Seeks the viewer to `target` seconds; returns the seek time on the page clock. */
async function seek(viewer: Page, target: number): Promise<number> {
  return viewer.evaluate((t) => {
    const at = performance.timeOrigin + performance.now();
    document.querySelector('video')!.currentTime = t;
    return at;
  }, target);
}

/** Waits for the first frame presented at the target (rVFC trace), falling back to playback advancing past it. */
async function waitFrameAt(viewer: Page, target: number, timeoutMs: number): Promise<number> {
  const h = await viewer.waitForFunction(
    (t) => {
      const tr = ((window as unknown as { __chunkstreamTrace?: { ev: string; t: number; target?: number }[] }).__chunkstreamTrace ?? []).find(
        (e) => e.ev === 'first-frame' && Math.abs((e.target ?? -1) - t) < 1, // the page may snap the seek to a part start
      );
      if (tr) return tr.t;
      const v = document.querySelector('video')!;
      return !v.seeking && !v.paused && v.currentTime > t + 0.5 ? performance.timeOrigin + performance.now() : 0;
    },
    target,
    { timeout: timeoutMs, polling: 20 },
  );
  return (await h.jsonValue()) as number;
}

// ---- 1 + 3: seek-to-play with priority, and time to first frame on a fresh link --------------

interface OnTrial {
  fraction: number;
  slot: number;
  seekMs: number;
  floorMs: number;
  ttffMs: number | null;
  firstUploadMs: number | null;
  firstFloorMs: number;
  stages: Record<string, number | null>;
}

const STAGES = [
  'prioritize acked',
  'uploader got priority (long poll)',
  'assigned (POST next)',
  'PUT started (on the link)',
  'bytes across the link',
  'PUT done',
  'reported uploaded',
  'published (status poll)',
  'viewer loaded the segment',
  'first frame at the new position',
] as const;

async function seekTrialOn(context: BrowserContext, file: string, fraction: number): Promise<OnTrial> {
  const up = await openUploader(context, file, { seg: SEG, bw: BW });
  const viewer = await context.newPage();
  try {
    const { link, videoId } = await waitForLink(up);
    await viewer.goto(link);
    await waitPlaying(viewer, 90_000);
    const duration = await viewer.evaluate(() => document.querySelector('video')!.duration);
    const target = duration * fraction;
    const status = await getStatus(videoId);
    const slotOf = (t: number) => status.slots.findLastIndex((s) => s.start <= t + 1e-6);
    const candidate = slotOf(target);
    if (status.slots[candidate]!.state !== 'pending') throw new Error(`slot ${candidate} is already ${status.slots[candidate]!.state} before the seek`);
    const offset = await clockOffset(viewer);
    // the page may move a seek that lands just before a part boundary to the next part
    const publishedAt = new Map<number, number>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const s = await getStatus(videoId).catch(() => null);
        for (const k of [candidate, candidate + 1]) if (s?.slots[k]?.state === 'published' && !publishedAt.has(k)) publishedAt.set(k, Date.now() + offset);
        await sleep(40);
      }
    })();
    const t0 = await seek(viewer, target);
    const frameAt = await waitFrameAt(viewer, target, 120_000);
    watching = false;
    await watcher;
    const [vt, ut] = [await getTrace(viewer), await getTrace(up.page)];
    const snapped = vt.find((e) => e.t >= t0 && e.ev === 'seek-snapped');
    const slot = snapped ? slotOf(snapped.to as number) : candidate;
    const plan = await up.page.evaluate(() => {
      const cs = (window as unknown as { chunkstream: { plan: { slots: { bytes: number }[] }; analysis: { tracks: { initSegment: { byteLength: number } }[] } } }).chunkstream;
      return { slots: cs.plan.slots.map((s) => s.bytes), init: cs.analysis.tracks.reduce((n, t) => n + t.initSegment.byteLength, 0) };
    });
    const after = (e: TraceEntry) => e.t >= t0;
    const isSlot = (e: TraceEntry) => e.slot === slot;
    const putStart = first(ut, (e) => after(e) && e.ev === 'put-start' && isSlot(e));
    const linkStarts = ut.filter((e) => after(e) && e.ev === 'link-start' && isSlot(e) && (!putStart || e.t <= putStart.t));
    const loads = [0, 1].map((track) => first(vt, (e) => after(e) && e.ev === 'seg-loaded' && isSlot(e) && e.track === track)?.t);
    const loaded = loads.filter((x): x is number => x !== undefined);
    const at: Record<(typeof STAGES)[number], number | undefined> = {
      'prioritize acked': first(vt, (e) => after(e) && e.ev === 'prioritize-acked')?.t,
      'uploader got priority (long poll)': first(ut, (e) => after(e) && e.ev === 'priority' && (e.slots as number[]).includes(slot))?.t,
      'assigned (POST next)': first(ut, (e) => after(e) && e.ev === 'next-response' && (e.slots as number[]).includes(slot))?.t,
      'PUT started (on the link)': linkStarts[linkStarts.length - 1]?.t,
      'bytes across the link': putStart?.t,
      'PUT done': first(ut, (e) => after(e) && e.ev === 'put-done' && isSlot(e))?.t,
      'reported uploaded': first(ut, (e) => after(e) && e.ev === 'reported' && isSlot(e))?.t,
      'published (status poll)': publishedAt.get(slot),
      'viewer loaded the segment': loaded.length ? Math.max(...loaded) : undefined,
      'first frame at the new position': frameAt,
    };
    const stages: Record<string, number | null> = {};
    for (const k of STAGES) stages[k] = at[k] !== undefined ? at[k]! - t0 : null;
    const linkShown = first(ut, (e) => e.ev === 'link-shown')?.t;
    const firstFrame = first(vt, (e) => e.ev === 'first-frame' && e.target === 0)?.t;
    const slot0Done = first(ut, (e) => e.ev === 'put-done' && e.slot === 0)?.t;
    return {
      fraction,
      slot,
      seekMs: frameAt - t0,
      floorMs: ((plan.slots[slot]! * 8) / BW) * 1000,
      ttffMs: linkShown && firstFrame ? firstFrame - linkShown : null,
      firstUploadMs: linkShown && slot0Done ? slot0Done - linkShown : null,
      firstFloorMs: (((plan.init + plan.slots[0]!) * 8) / BW) * 1000,
      stages,
    };
  } finally {
    await viewer.close().catch(() => undefined);
    await up.close();
  }
}

/** Priority off: one natural-order upload, three viewers (no prioritize, nohint=1) seeking to 25/50/75 %. */
async function seekRunOff(context: BrowserContext, file: string): Promise<{ fraction: number; ms: number; slot: number }[]> {
  const up = await openUploader(context, file, { seg: SEG, bw: BW });
  const viewers: Page[] = [];
  try {
    const { link, videoId } = await waitForLink(up);
    for (let i = 0; i < POSITIONS.length; i++) {
      const v = await context.newPage();
      viewers.push(v);
      await v.goto(`${link}&noprioritize=1`);
    }
    await Promise.all(viewers.map((v) => waitPlaying(v, 90_000)));
    const status = await getStatus(videoId);
    const seeks = await Promise.all(
      viewers.map(async (v, i) => {
        const duration = await v.evaluate(() => document.querySelector('video')!.duration);
        const target = duration * POSITIONS[i]!;
        return { target, t0: await seek(v, target), slot: status.slots.findLastIndex((s) => s.start <= target + 1e-6) };
      }),
    );
    const totalBytes = (await stat(file)).size;
    const naturalS = (totalBytes * 8) / BW;
    let windowsSeen = 0;
    const checker = setInterval(() => {
      void getStatus(videoId)
        .then((s) => {
          if (s.priority_slots.length) windowsSeen++;
        })
        .catch(() => undefined);
    }, 5000);
    try {
      const out = await Promise.all(
        viewers.map(async (v, i) => {
          const at = await waitFrameAt(v, seeks[i]!.target, (naturalS * POSITIONS[i]! * 1.6 + 120) * 1000);
          log(`priority off: ${POSITIONS[i]! * 100} % played after ${((at - seeks[i]!.t0) / 1000).toFixed(1)} s`);
          return { fraction: POSITIONS[i]!, ms: at - seeks[i]!.t0, slot: seeks[i]!.slot };
        }),
      );
      if (windowsSeen) log(`warning: the server reported priority windows ${windowsSeen} times during the priority-off run`);
      return out;
    } finally {
      clearInterval(checker);
    }
  } finally {
    for (const v of viewers) await v.close().catch(() => undefined);
    await up.close();
  }
}

async function bench1and3(context: BrowserContext, m: Media): Promise<void> {
  const file = await long360(m);
  const size = (await stat(file)).size;
  const trials = QUICK ? 1 : 3;
  log(`1: seek-to-play, ${(size / MiB).toFixed(0)} MiB / 30 min source at ${BW / 1e6} Mbit/s, ${trials} trial(s) per position, priority on`);
  const on: OnTrial[] = [];
  for (let k = 0; k < trials; k++) {
    for (const f of POSITIONS) {
      try {
        const t = await seekTrialOn(context, file, f);
        on.push(t);
        log(
          `priority on ${f * 100} % (slot ${t.slot}): ${(t.seekMs / 1000).toFixed(2)} s (floor ${(t.floorMs / 1000).toFixed(2)} s); ` +
            Object.entries(t.stages)
              .map(([k2, v]) => `${k2} ${v === null ? '—' : (v / 1000).toFixed(2)}`)
              .join(' · '),
        );
      } catch (e) {
        log(`priority on ${f * 100} % failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
  log('1: priority off (natural order, three viewers at 25/50/75 %)…');
  let off: { fraction: number; ms: number; slot: number }[] = [];
  try {
    off = await seekRunOff(context, file);
  } catch (e) {
    log(`priority off failed: ${(e as Error).message.split('\n')[0]}`);
  }
  for (const f of POSITIONS) {
    const ts = on.filter((t) => t.fraction === f);
    const pct = `${f * 100} %`;
    const onMs = ts.length ? median(ts.map((t) => t.seekMs)) : null;
    const floor = ts.length ? median(ts.map((t) => t.floorMs)) : null;
    const met = onMs !== null && floor !== null && onMs <= 1.2 * floor + 500;
    rows.push(
      row(
        `1.${f * 100}`,
        `Seek-to-play at ${pct}, priority on (median of ${ts.length}; baseline: one segment's bytes / ${BW / 1e6} Mbit/s)`,
        onMs,
        'ms',
        floor,
        { text: '≤ 1.2 × floor + 0.5 s', met },
      ),
    );
    const o = off.find((x) => x.fraction === f);
    const offRow = row(
      `1.${f * 100}n`,
      `Seek-to-play at ${pct}, priority off: natural order (baseline: priority on)`,
      o?.ms ?? null,
      'ms',
      onMs,
      f === 0.75 && o && onMs ? { text: '≥ 50 × priority on', met: o.ms / onMs >= 50 } : null,
    );
    rows.push(offRow);
  }
  // stage breakdown, priority on (all positions), median of the cumulative time since the seek
  let prev = 0;
  STAGES.forEach((k, i) => {
    const xs = on.map((t) => t.stages[k]).filter((x): x is number => x !== null);
    const v = xs.length ? median(xs) : null;
    rows.push(row(`1.s${String(i).padStart(2, '0')}`, `Seek stage (priority on, median since the seek): ${k}`, v, 'ms', null, null, v !== null ? `+${(v - prev).toFixed(0)} ms` : undefined));
    if (v !== null) prev = v;
  });
  // 3: fresh link → first frame (from the same uploads, before the seek)
  const tt = on.filter((t) => t.ttffMs !== null && t.firstUploadMs !== null);
  if (tt.length) {
    const ttff = median(tt.map((t) => t.ttffMs!));
    const upl = median(tt.map((t) => t.firstUploadMs!));
    const physical = median(tt.map((t) => t.firstFloorMs));
    rows.push(row('3', `Viewer time to first frame on a fresh link (link shown → first frame; median of ${tt.length}; baseline: init + first segment uploaded)`, ttff, 'ms', upl));
    rows.push(row('3.floor', `Init + first segment bytes / ${BW / 1e6} Mbit/s (physical floor of figure 3; baseline)`, ttff, 'ms', physical));
  }
}

// ---- 2: time to share link ------------------------------------------------------------------

async function bench2(context: BrowserContext, m: Media): Promise<void> {
  log('2: making a 4 GiB moov-at-the-end file (720p 20 Mbit/s clip, stream_loop -c copy)…');
  const clip = await makeClip(join(m.dir, 'clip720.mp4'), { seconds: 10, width: 1280, height: 720, noise: true, bitrate: '20M', x264params: 'keyint=60' });
  const big = await loopToSize(clip, join(m.dir, 'big4g.mp4'), 4 * 1024 ** 3);
  try {
    const boxes = await topLevelBoxes(big);
    const moov = boxes.find((b) => b.type === 'moov')!;
    const size = (await stat(big)).size;
    if (moov.start < size / 2) throw new Error('the moov is not at the end');
    const trials = QUICK ? 3 : 7;
    // bw tiny: the upload that starts once the link is shown sends (almost) nothing meanwhile
    const up = await openUploader(context, big, { bw: 1000 });
    const samples: { total: number; stages: Record<string, number> }[] = [];
    try {
      await waitForLink(up, 120_000); // warm-up (cold caches), not counted
      for (let i = 0; i < trials; i++) {
        await up.page.evaluate(() => localStorage.clear());
        await clearTrace(up.page);
        await up.page.setInputFiles('#file', big);
        await up.page.waitForFunction(
          () => ((window as unknown as { __chunkstreamTrace?: { ev: string }[] }).__chunkstreamTrace ?? []).some((e) => e.ev === 'link-shown'),
          null,
          { timeout: 60_000, polling: 10 },
        );
        const tr = await getTrace(up.page);
        const at = (ev: string) => first(tr, (e) => e.ev === ev)?.t ?? Number.NaN;
        const t0 = at('file-picked');
        samples.push({
          total: at('link-shown') - t0,
          stages: {
            'analysis (box scan, moov read + parse, sample tables, init segments)': at('analyzed') - t0,
            'fingerprint (3 × 128 KiB slices + SHA-256, alongside the analysis)': at('fingerprinted') - t0,
            'plan (keyframe-aligned slots)': at('planned') - t0,
            'POST /api/videos sent': at('create-request') - t0,
            'POST /api/videos answered': at('create-response') - t0,
            'link shown': at('link-shown') - t0,
          },
        });
      }
      // the floor, in the same page: read the moov with one Blob slice, and one API round trip
      await up.page.evaluate(() => {
        const i = document.createElement('input');
        i.type = 'file';
        i.id = 'bench-file';
        i.hidden = true;
        document.body.append(i);
      });
      await up.page.setInputFiles('#bench-file', big);
      const floor = await up.page.evaluate(
        async ({ start, size: n, reps }) => {
          const f = (document.getElementById('bench-file') as HTMLInputElement).files![0]!;
          const med = (xs: number[]) => xs.sort((a, b) => a - b)[xs.length >> 1]!;
          const moov: number[] = [];
          const rtt: number[] = [];
          for (let r = 0; r < reps; r++) {
            const t0 = performance.now();
            const buf = await f.slice(start, start + n).arrayBuffer();
            if (buf.byteLength !== n) throw new Error('short read');
            moov.push(performance.now() - t0);
          }
          for (let r = 0; r < reps * 3; r++) {
            const t0 = performance.now();
            const res = await fetch('/api/health', { cache: 'no-store' });
            await res.json();
            rtt.push(performance.now() - t0);
          }
          return { moov: med(moov), rtt: med(rtt) };
        },
        { start: moov.start, size: moov.size, reps: 7 },
      );
      const total = median(samples.map((s) => s.total));
      const floorMs = floor.moov + floor.rtt;
      rows.push(
        row(
          '2',
          `Time to share link, ${(size / 1024 ** 3).toFixed(1)} GiB moov-at-end file (pick → link shown, median of ${trials}; baseline: moov read + API round trip)`,
          total,
          'ms',
          floorMs,
          { text: '≤ 150 ms', met: total <= 150 },
        ),
      );
      rows.push(row('2.moov', `Floor part: read the ${(moov.size / MiB).toFixed(1)} MiB moov with one Blob.slice().arrayBuffer()`, floor.moov, 'ms'));
      rows.push(row('2.rtt', 'Floor part: one API round trip (GET /api/health)', floor.rtt, 'ms'));
      let prev = 0;
      Object.keys(samples[0]!.stages)
        .map((k) => [k, median(samples.map((s) => s.stages[k]!))] as const)
        .sort((x, y) => x[1] - y[1])
        .forEach(([k, v], i) => {
          rows.push(row(`2.s${i}`, `Share-link stage (median since the pick): ${k}`, v, 'ms', null, null, `+${(v - prev).toFixed(0)} ms`));
          prev = v;
        });
    } finally {
      await up.close();
    }
  } finally {
    await rm(big, { force: true });
    await rm(clip, { force: true });
  }
}

// ---- 4: upload goodput vs raw presigned PUTs ----------------------------------------------------

async function bench4(context: BrowserContext, m: Media): Promise<void> {
  const minutes = QUICK ? 2 : 4;
  const file = await loops(await base360(m), join(m.dir, `goodput-${minutes}min.mp4`), minutes);
  log(`4: goodput, ${minutes} min file at ${BW / 1e6} Mbit/s: the uploader, then raw presigned PUTs of the same bytes`);
  const up = await openUploader(context, file, { seg: SEG, bw: BW });
  const seen: { createBody: string | null } = { createBody: null };
  up.page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/api/videos') seen.createBody = r.postData();
  });
  try {
    await waitForLink(up);
    await waitForState(up, ['complete'], 15 * 60_000);
    const tr = await getTrace(up.page);
    const t0 = first(tr, (e) => e.ev === 'link-shown')!.t;
    const reported = tr.filter((e) => e.ev === 'reported');
    const tEnd = Math.max(...reported.map((e) => e.t));
    const createBody = seen.createBody;
    if (!createBody) throw new Error('did not see the POST /api/videos body');
    // a second session with the same plan: its presigned URLs for the raw PUTs
    const res = await fetch(`${BASE_URL}/api/videos`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: createBody });
    if (!res.ok) throw new Error(`create: ${res.status} ${await res.text()}`);
    const session = (await res.json()) as { video_id: string; upload_secret: string; init_uploads: unknown[]; slot_count: number };
    const assignments: unknown[] = [];
    for (let guard = 0; assignments.length < session.slot_count && guard < 1000; guard++) {
      const r = await fetch(`${BASE_URL}/api/videos/${session.video_id}/next`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${session.upload_secret}` },
        body: JSON.stringify({ max: 16 }),
      });
      const body = (await r.json()) as { assignments: unknown[] };
      if (!body.assignments.length) break;
      assignments.push(...body.assignments);
    }
    const raw = await up.page.evaluate(
      async ({ inits, slots, bw, lanes }) => {
        type Up = { track_id: number; method: string; url: string; headers: Record<string, string> };
        const cs = (window as unknown as {
          chunkstream: {
            analysis: { tracks: { id: number; initSegment: Uint8Array }[] };
            segmenter: { buildSlot(slot: number, tracks: number[]): Promise<Blob[]> };
          };
        }).chunkstream;
        const trackIndex = (id: number) => cs.analysis.tracks.findIndex((t) => t.id === id);
        const put = async (u: Up, body: Blob | Uint8Array) => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(u.headers)) if (k.toLowerCase() !== 'content-length') headers[k] = v;
          const r = await fetch(u.url, { method: u.method || 'PUT', headers, body: body as BodyInit });
          if (!r.ok) throw new Error(`PUT ${r.status}`);
        };
        // the same segment bytes, built before the clock starts (no generation in the baseline)
        const work: { bodies: { u: Up; body: Blob | Uint8Array }[] }[] = [];
        for (const a of slots as { slot: number; uploads: Up[] }[]) {
          const built = await cs.segmenter.buildSlot(
            a.slot,
            a.uploads.map((u) => trackIndex(u.track_id)),
          );
          work.push({ bodies: a.uploads.map((u, i) => ({ u, body: built[i]! })) });
        }
        work.unshift({ bodies: (inits as Up[]).map((u) => ({ u, body: cs.analysis.tracks[trackIndex(u.track_id)]!.initSegment })) });
        // the same pacing model: a serial link of `bw` bits/s, each body released when it has crossed it
        let linkFreeAt = 0;
        const take = (bytes: number) => {
          const now = performance.now();
          const start = Math.max(now, linkFreeAt);
          linkFreeAt = start + (bytes * 8 * 1000) / bw;
          return new Promise((r) => setTimeout(r, linkFreeAt - now));
        };
        let bytes = 0;
        const t0 = performance.now();
        let next = 0;
        await Promise.all(
          Array.from({ length: lanes }, async () => {
            while (next < work.length) {
              const w = work[next++]!;
              const n = w.bodies.reduce((s, b) => s + (b.body instanceof Blob ? b.body.size : b.body.byteLength), 0);
              await take(n);
              await Promise.all(w.bodies.map((b) => put(b.u, b.body)));
              bytes += n;
            }
          }),
        );
        return { ms: performance.now() - t0, bytes };
      },
      { inits: session.init_uploads, slots: assignments, bw: BW, lanes: 3 },
    );
    const bytes = await up.page.evaluate(() => {
      const p = (window as unknown as { chunkstreamProgress: { bytesTotal: number } }).chunkstreamProgress;
      return p.bytesTotal;
    });
    const upMbps = (bytes * 8) / ((tEnd - t0) / 1000) / 1e6;
    const rawMbps = (raw.bytes * 8) / (raw.ms / 1000) / 1e6;
    rows.push(
      row(
        '4',
        `Upload goodput, ${(bytes / MiB).toFixed(0)} MiB at ${BW / 1e6} Mbit/s (link shown → last slot reported; baseline: raw presigned PUTs, same bytes and pacing)`,
        upMbps,
        'Mbit/s',
        rawMbps,
        { text: '≥ 0.95 × raw PUTs', met: upMbps >= 0.95 * rawMbps },
        raw.bytes !== bytes ? `raw PUTs sent ${raw.bytes} bytes, the uploader ${bytes}` : undefined,
      ),
    );
  } finally {
    await up.close();
    await rm(file, { force: true });
  }
}

// ---- 5: segmentation throughput and memory ----------------------------------------------------

async function segmentBundle(): Promise<string> {
  const r = await build({
    entryPoints: [join(here, 'segment-page.ts')],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: ['chrome110'],
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'warning',
  });
  return r.outputFiles[0]!.text;
}

async function bench5(context: BrowserContext, userDataDir: string, m: Media): Promise<void> {
  const code = await segmentBundle();
  const files: { id: string; label: string; make: () => Promise<string> }[] = [
    {
      id: '5.1g',
      label: '1 GiB file (720p 20 Mbit/s)',
      make: async () => {
        const clip = await makeClip(join(m.dir, 'clip720b.mp4'), { seconds: 10, width: 1280, height: 720, noise: true, bitrate: '20M', x264params: 'keyint=60' });
        const f = await loopToSize(clip, join(m.dir, 'big1g.mp4'), 1024 ** 3);
        await rm(clip, { force: true });
        return f;
      },
    },
    {
      id: '5.3h',
      label: '3 h file (320x180, ~0.3 Mbit/s)',
      make: async () => {
        const clip = await makeClip(join(m.dir, 'clip180.mp4'), { seconds: 60, x264params: 'keyint=60' });
        const f = await loops(clip, join(m.dir, 'long3h.mp4'), 180);
        await rm(clip, { force: true });
        return f;
      },
    },
  ];
  const wanted = args.includes('--bench5') ? new Set(args[args.indexOf('--bench5') + 1]!.split(',')) : null;
  for (const spec of files) {
    if (wanted && !wanted.has(spec.id.slice(2))) continue;
    log(`5: ${spec.label}: making it…`);
    const file = await spec.make();
    const page = await context.newPage();
    try {
      await page.setContent('<!doctype html><title>segmentation bench</title><input type="file" id="f">');
      await page.addScriptTag({ content: code });
      await page.setInputFiles('#f', file);
      const cdp = await context.newCDPSession(page);
      await cdp.send('Performance.enable');
      let heapPeak = 0;
      let rssPeak = 0;
      let anonPeak = 0;
      let phase = 'analysis';
      const phasePeak: Record<string, number> = {};
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          try {
            const { metrics } = await cdp.send('Performance.getMetrics');
            heapPeak = Math.max(heapPeak, metrics.find((x) => x.name === 'JSHeapUsedSize')?.value ?? 0);
            const mem = await rendererRss(userDataDir);
            rssPeak = Math.max(rssPeak, mem.rss);
            anonPeak = Math.max(anonPeak, mem.anon);
            phasePeak[phase] = Math.max(phasePeak[phase] ?? 0, mem.anon);
          } catch {
            /* closing */
          }
          await sleep(200);
        }
      })();
      const call = <T>(name: string, ...params: unknown[]): Promise<T> =>
        page.evaluate(
          ([n, p]) => (window as unknown as { __segmentBench: Record<string, (...x: unknown[]) => unknown> }).__segmentBench[n as string]!(...(p as unknown[])),
          [name, params] as const,
        ) as Promise<T>;
      type Read = { ms: number; bytes: number };
      const a = await call<{ analyzeMs: number; planMs: number; slots: number; segments: number; bytes: number; fileSize: number; avgSegment: number }>('analyze');
      // baseline: the faster of reading in average-segment-sized slices and in 4 MiB slices
      const chunks = [Math.max(64 * 1024, Math.round(a.avgSegment)), 4 * MiB];
      await sleep(600); // a sample or two after the analysis
      const gc = async (next: string) => {
        await sleep(300);
        await cdp.send('HeapProfiler.collectGarbage').catch(() => undefined);
        phase = next;
      };
      // memory as the uploader holds it: segments built into Blobs, not read back
      await gc('segmentation');
      const held = await call<Read & { segments: number }>('segmentAll', false);
      await sleep(600);
      const peakUploaderPath = { heap: heapPeak, anon: anonPeak, rss: rssPeak };
      await gc('raw reads');
      await call<Read>('rawRead', chunks[1]); // page cache warm for the timed passes
      await gc('segmentation read back');
      const seg = await call<Read & { segments: number }>('segmentAll', true);
      await gc('raw reads');
      const reads: Read[] = [];
      for (const c of chunks) reads.push(await call<Read>('rawRead', c));
      // baseline for the sample tables: mp4box's per-sample objects of the same tracks, held
      await gc('mp4box sample objects');
      const storesAnon = phasePeak['raw reads'] ?? 0;
      const objects = await call<{ ms: number; samples: number }>('sampleObjects');
      await sleep(600);
      await cdp.send('HeapProfiler.collectGarbage').catch(() => undefined);
      await sleep(600);
      const objectsAnon = phasePeak['mp4box sample objects'] ?? 0;
      const afterObjects = await cdp.send('Performance.getMetrics');
      const objectsHeap = afterObjects.metrics.find((x) => x.name === 'JSHeapUsedSize')?.value ?? 0;
      sampling = false;
      await sampler;
      rows.push(
        row(
          `${spec.id}.tables`,
          `Sample tables, ${spec.label}: JS heap after analysis (typed-array stores) (baseline: the same plus mp4box's per-sample objects, the old segmenter's input)`,
          peakUploaderPath.heap / MiB,
          'MiB',
          objectsHeap / MiB,
          null,
          `${objects.samples} samples; building the objects took ${objects.ms.toFixed(0)} ms; anonymous RSS with them held ${(objectsAnon / MiB).toFixed(0)} MiB ` +
            `(vs ${(storesAnon / MiB).toFixed(0)} MiB in the raw-read phase before)`,
        ),
      );
      const blobs = await call<Read & { segments: number }>('segmentBlobs', 20);
      const blobMBs = blobs.bytes / MiB / (blobs.ms / 1000);
      const segMBs = seg.bytes / MiB / (seg.ms / 1000);
      const rawAt = reads.map((r) => r.bytes / MiB / (r.ms / 1000));
      const rawMBs = Math.max(...rawAt);
      const sizeMiB = a.fileSize / MiB;
      rows.push(
        row(
          spec.id,
          `Segmentation throughput, ${spec.label}: ${seg.segments} segments built and read back (baseline: raw Blob.slice().arrayBuffer() reads of the file)`,
          segMBs,
          'MiB/s',
          rawMBs,
          null,
          `built without reading back (as the uploader): ${(held.bytes / MiB / (held.ms / 1000)).toFixed(0)} MiB/s; ` +
            `raw reads: ${rawAt[0]!.toFixed(0)} MiB/s in ${(chunks[0]! / 1024).toFixed(0)} KiB slices (the average segment), ${rawAt[1]!.toFixed(0)} MiB/s in 4 MiB slices; ` +
            `the same segments as Blobs of file slices (Segmenter.buildBlob, one part per run of contiguous samples; first 20 slots): ${blobMBs.toFixed(1)} MiB/s`,
        ),
      );
      rows.push(row(`${spec.id}.heap`, `Peak JS heap, ${spec.label}, analysis + segmentation (baseline: file size)`, peakUploaderPath.heap / MiB, 'MiB', sizeMiB));
      rows.push(
        row(
          `${spec.id}.rss`,
          `Peak renderer anonymous RSS, ${spec.label}, analysis + segmentation (baseline: file size)`,
          peakUploaderPath.anon / MiB,
          'MiB',
          sizeMiB,
          null,
          `peak anonymous RSS by phase (GC between phases): ${Object.entries(phasePeak)
            .map(([k, v]) => `${k} ${(v / MiB).toFixed(0)} MiB`)
            .join(', ')}; total RSS with file-backed pages ${(peakUploaderPath.rss / MiB).toFixed(0)} MiB`,
        ),
      );
      rows.push(row(`${spec.id}.an`, `Analysis (moov read + parse) + plan, ${spec.label}, ${a.slots} slots`, a.analyzeMs + a.planMs, 'ms', null, null, `analysis ${a.analyzeMs.toFixed(0)} ms, plan ${a.planMs.toFixed(0)} ms`));
      log(`5: ${spec.label}: ${segMBs.toFixed(0)} MiB/s vs raw ${rawMBs.toFixed(0)} MiB/s; heap ${(peakUploaderPath.heap / MiB).toFixed(0)} MiB, anon RSS ${(peakUploaderPath.anon / MiB).toFixed(0)} MiB`);
    } finally {
      await page.close().catch(() => undefined);
      await rm(file, { force: true });
    }
  }
}

// ---- main ------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const health = await fetch(`${BASE_URL}/api/health`).catch(() => null);
  if (!health?.ok) throw new Error(`backend not reachable at ${BASE_URL} (set CHUNKSTREAM_URL)`);
  const started = Date.now();
  const m = await media();
  const browser = await launch();
  // tsx compiles this file with esbuild's keepNames: functions passed to page.evaluate may call
  // its `__name` helper, which the page does not have
  await browser.context.addInitScript({ content: 'globalThis.__name = globalThis.__name || ((f) => f);' });
  try {
    const steps: [string, () => Promise<void>][] = [
      ['2', () => bench2(browser.context, m)],
      ['5', () => bench5(browser.context, browser.userDataDir, m)],
      ['4', () => bench4(browser.context, m)],
      ['1', () => bench1and3(browser.context, m)],
    ];
    for (const [n, fn] of steps) {
      if (!enabled(n) && !(n === '1' && enabled('3'))) continue;
      const t = Date.now();
      try {
        await fn();
      } catch (e) {
        log(`benchmark ${n} failed: ${(e as Error).stack ?? e}`);
        rows.push(row(n, `benchmark ${n} failed`, null, '', null, null, (e as Error).message.split('\n')[0]));
      }
      log(`benchmark ${n} took ${((Date.now() - t) / 1000).toFixed(0)} s`);
    }
  } finally {
    await browser.close();
    await m.cleanup();
  }
  rows.sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
  console.log('');
  printTable(rows);
  console.log(`\n(${((Date.now() - started) / 60000).toFixed(1)} min${QUICK ? ', --quick' : ''})`);
  if (OUT) {
    await writeFile(OUT, JSON.stringify(rows, null, 2));
    log(`wrote ${OUT}`);
  }
}

await main();
