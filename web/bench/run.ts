/**
 * Browser benchmarks (issues 4 and 7): real Chromium (Debian's) driving the real pages against a
 * running backend at CHUNKSTREAM_URL. A benchmark, not a test: it prints figures, each with a
 * baseline measured in this same run on this machine, and writes the rows to `--out <file>` (JSON
 * list of {id, name, value, unit, baseline, ratio, target, met, note?, table?}; scripts/bench.sh
 * merges them into docs/benchmarks.md). See bench/README.md for what each figure means.
 *
 * The uploader's uplink is shaped below the application (bench/link.ts: a network namespace with a
 * tbf uplink when CHUNKSTREAM_LINK=netns, else Chromium's CDP throttling); the uploader runs with
 * its default settings. Viewers run in a second Chromium on the host.
 *
 *   node --import tsx bench/run.ts [--quick] [--out results.json] [--only 0,1,2,3,4,5,9]
 */
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleForPage } from '../e2e/helpers/bundle.ts';
import type { BrowserContext, Page } from 'playwright-core';
import { getStatus, rendererRss } from '../e2e/helpers/app.ts';
import { BASE_URL, launch } from '../e2e/helpers/browser.ts';
import { loopToSize, makeClip, makeTempDir, sh } from '../test/helpers/media.ts';
import { LINK_MODE, linkId, linkLabel, measureLink, NETNS_CHROMIUM, QUEUE_MS, setLink, shapePage, waitLinkIdle } from './link.ts';
import type { Link } from './link.ts';
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
import type { Row, TraceEntry, UploaderPage } from './lib.ts';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const OUT = args.includes('--out') ? args[args.indexOf('--out') + 1] : undefined;
const ONLY = args.includes('--only') ? new Set(args[args.indexOf('--only') + 1]!.split(',')) : null;
const enabled = (n: string): boolean => !ONLY || ONLY.has(n);
/** the counting pass-through in front of LocalStack (bench/s3-counter.ts), if the runner uses one */
const COUNTER = process.env.CHUNKSTREAM_S3_COUNTER?.replace(/\/$/, '') ?? null;
const BUCKET = process.env.CHUNKSTREAM_BENCH_BUCKET ?? 'chunkstream-bench';
/** where the made media is kept between runs (ffmpeg output is deterministic for these inputs) */
const MEDIA_CACHE = process.env.CHUNKSTREAM_BENCH_MEDIA ?? join(here, '..', '..', 'target', 'bench-media');
const RUNNER_LOG = process.env.CHUNKSTREAM_RUNNER_LOG ?? null;
/** `CHUNKSTREAM_BENCH_TRACE_DIR`: each seek trial's viewer and uploader traces are written there */
const TRACE_DIR = process.env.CHUNKSTREAM_BENCH_TRACE_DIR ?? null;

/** the links of issue 7: the main one first */
const ALL_LINKS: Link[] = [
  { mbit: 8, rttMs: 20 },
  { mbit: 2, rttMs: 60 },
  { mbit: 50, rttMs: 10 },
];
const MAIN = ALL_LINKS[0]!;
/** `CHUNKSTREAM_BENCH_LINKS=8,50` runs only those links (Mbit/s), for quicker experiments */
const LINK_FILTER = process.env.CHUNKSTREAM_BENCH_LINKS?.split(',').map(Number) ?? null;
const LINKS = ALL_LINKS.filter((l) => !LINK_FILTER || LINK_FILTER.includes(l.mbit));
/**
 * `CHUNKSTREAM_BENCH_PARAMS=seg=2` (experiments only): uploader page parameters for figures 1 and 3,
 * which then do not measure the default settings (printed at the start; use with --no-report)
 */
const EXTRA_PARAMS: Record<string, string> = Object.fromEntries(new URLSearchParams(process.env.CHUNKSTREAM_BENCH_PARAMS ?? ''));
/** `CHUNKSTREAM_BENCH_NOISE=0` skips the noise-source seeks on the main link */
const NOISE = process.env.CHUNKSTREAM_BENCH_NOISE !== '0';
const POSITIONS = [0.25, 0.5, 0.75];
const trialsOn = (l: Link): number => (QUICK ? 1 : l.mbit <= 2 ? 1 : 3);
const positionsOn = (l: Link): number[] => (QUICK && l !== MAIN ? [0.5] : POSITIONS);
/** candidate part durations (issue 7 item 3); the page's `seg=` parameter */
const SEGS = [2, 4, 6, 10];

const log = (m: string): void => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}`);

const rows: Row[] = [];
/** measured payload rate of each link (raw PUT through it), bits/s */
const linkRate = new Map<Link, number>();
const rateOf = (l: Link): number => linkRate.get(l) ?? l.mbit * 1e6;

interface Browsers {
  /** the uploader's Chromium: inside the namespace (netns mode) */
  up: BrowserContext;
  /** viewers' Chromium: on the host */
  view: BrowserContext;
  viewDataDir: string;
}

/** The uploader page in the shaped browser, on a quiet link. */
async function openShapedUploader(b: Browsers, file: string, l: Link, params: Record<string, string | number> = {}): Promise<UploaderPage> {
  await waitLinkIdle();
  return openUploader(b.up, file, params, (p) => shapePage(b.up, p, l));
}

// ---- media ---------------------------------------------------------------------------------

interface Media {
  dir: string;
  cleanup(): Promise<void>;
  cache: Map<string, string>;
}

async function media(): Promise<Media> {
  const { dir, cleanup } = await makeTempDir('chunkstream-bench-');
  await mkdir(MEDIA_CACHE, { recursive: true });
  return { dir, cleanup, cache: new Map() };
}

/** A file kept in MEDIA_CACHE under `name`, made once by `make(tmpPath)`. */
async function cached(m: Media, name: string, make: (path: string) => Promise<void>): Promise<string> {
  const hit = m.cache.get(name);
  if (hit) return hit;
  const path = join(MEDIA_CACHE, name);
  const ok = await stat(path).then((s) => s.size > 0).catch(() => false);
  if (!ok) {
    log(`making ${name} (cached in ${MEDIA_CACHE})…`);
    const tmp = `${path}.part.mp4`;
    await make(tmp);
    await rename(tmp, path);
  }
  m.cache.set(name, path);
  return path;
}

async function loops(src: string, dst: string, times: number): Promise<string> {
  await sh('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', '-stream_loop', String(times - 1), '-i', src, '-c', 'copy', dst], { timeoutMs: 900_000 });
  return dst;
}

/** 60 s 1280×720 H.264 with B-frames (bframes=3), 2 s GOPs (30 fps, keyint 60), ~2.8 Mbit/s + AAC 64k */
const base720 = (m: Media): Promise<string> =>
  cached(m, 'b720-60s-bf3-2800k.mp4', async (p) => {
    await makeClip(p, { seconds: 60, width: 1280, height: 720, noise: true, bitrate: '2800k', x264params: 'keyint=60:min-keyint=60:scenecut=0:bframes=3:b-adapt=0' });
  });
/** issue 7's source: 30 min of base720 (stream_loop -c copy; moov at the end), ~180 parts of ~3.5 MB */
const long720 = async (m: Media): Promise<string> => {
  const base = await base720(m);
  return cached(m, 'b720-30min-bf3-2800k.mp4', async (p) => void (await loops(base, p, 30)));
};
const cut720 = async (m: Media, minutes: number): Promise<string> => {
  const base = await base720(m);
  return cached(m, `b720-${minutes}min-bf3-2800k.mp4`, async (p) => void (await loops(base, p, minutes)));
};
/** issue 4's noise source: 60 s 640×360 at ~1.2 Mbit/s + AAC 64k, 2 s GOPs (no B-frames) */
const base360 = (m: Media): Promise<string> =>
  cached(m, 'n360-60s-1200k.mp4', async (p) => {
    await makeClip(p, { seconds: 60, width: 640, height: 360, noise: true, bitrate: '1200k', x264params: 'keyint=60:min-keyint=60:scenecut=0' });
  });
const long360 = async (m: Media): Promise<string> => {
  const base = await base360(m);
  return cached(m, 'n360-30min-1200k.mp4', async (p) => void (await loops(base, p, 30)));
};
/** a 3-hour file for the manifest/state sizes (320×180, small: only its timeline matters) */
const long3h = async (m: Media): Promise<string> => {
  const clip = await cached(m, 's180-60s.mp4', async (p) => void (await makeClip(p, { seconds: 60, x264params: 'keyint=60:min-keyint=60:scenecut=0' })));
  return cached(m, 's180-3h.mp4', async (p) => void (await loops(clip, p, 180)));
};

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
  /** ms of the prioritized part's PUT during which another part's PUT was in flight, and how many */
  sharedMs: number | null;
  sharedWith: number;
}

const STAGES = [
  'prioritize acked (viewer)',
  'uploader got the priority',
  'assigned (POST next, or leased by the priority answer)',
  'link free for it (natural PUTs aborted or done)',
  'segments built',
  'PUT started',
  'PUT done',
  'reported uploaded',
  'runner: slot uploaded (log)',
  'runner: job done (log)',
  'published (status poll)',
  'viewer loaded the segment',
  'first frame at the new position',
] as const;

/** Runner log events `msg` for a video: slot → first time (epoch ms) at or after `since`. */
async function runnerEvents(videoId: string, msg: string, since: number): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  if (!RUNNER_LOG) return out;
  const text = await readFile(RUNNER_LOG, 'utf8').catch(() => '');
  for (const raw of text.split('\n')) {
    if (!raw.includes(videoId) || !raw.includes(msg)) continue;
    const line = raw.replace(/\x1b\[[0-9;]*m/g, ''); // tracing's colours
    const t = Date.parse(line.trim().split(/\s+/)[0] ?? '');
    const slot = /slot[=:]\s*(\d+)/.exec(line)?.[1];
    if (!Number.isFinite(t) || slot === undefined || t < since) continue;
    if (!out.has(Number(slot))) out.set(Number(slot), t);
  }
  return out;
}

/** What shared the link with `slot`'s PUT (from `put-start` to `put-done`), from the uploader's own trace. */
function linkSharing(ut: TraceEntry[], slot: number, t0: number): { sharedMs: number | null; sharedWith: number } {
  const start = ut.find((e) => e.t >= t0 && e.ev === 'put-start' && e.slot === slot)?.t;
  const end = ut.find((e) => start !== undefined && e.t >= start && e.ev === 'put-done' && e.slot === slot)?.t;
  if (start === undefined || end === undefined) return { sharedMs: null, sharedWith: 0 };
  const intervals: [number, number][] = [];
  const open = new Map<number, number>();
  for (const e of ut) {
    if (typeof e.slot !== 'number' || e.slot === slot) continue;
    if (e.ev === 'put-start') open.set(e.slot, e.t);
    else if (/^put-(done|abort|aborted|cancel|cancelled|failed|error)$/.test(e.ev) && open.has(e.slot)) {
      intervals.push([open.get(e.slot)!, e.t]);
      open.delete(e.slot);
    }
  }
  for (const s of open.values()) intervals.push([s, end]); // still in flight when the trace was read
  const overlapping = intervals.map(([a, b]) => [Math.max(a, start), Math.min(b, end)] as const).filter(([a, b]) => b > a);
  // union of the overlaps
  let sharedMs = 0;
  let reach = start;
  for (const [a, b] of [...overlapping].sort((x, y) => x[0] - y[0])) {
    if (b > reach) {
      sharedMs += b - Math.max(a, reach);
      reach = b;
    }
  }
  return { sharedMs, sharedWith: overlapping.length };
}

interface PlanInfo {
  slots: number[];
  init: number;
  duration: number;
}
async function planInfo(page: Page): Promise<PlanInfo> {
  return page.evaluate(() => {
    const cs = (window as unknown as {
      chunkstream: { plan: { slots: { bytes: number; startTime?: number; durationTime: number }[] }; analysis: { tracks: { initSegment: { byteLength: number } }[] } };
    }).chunkstream;
    return {
      slots: cs.plan.slots.map((s) => s.bytes),
      init: cs.analysis.tracks.reduce((n, t) => n + t.initSegment.byteLength, 0),
      duration: cs.plan.slots.reduce((n, s) => n + s.durationTime, 0),
    };
  });
}

async function seekTrialOn(b: Browsers, file: string, fraction: number, l: Link, params: Record<string, string | number> = {}): Promise<OnTrial> {
  const up = await openShapedUploader(b, file, l, params);
  const viewer = await b.view.newPage();
  const bps = rateOf(l);
  try {
    const { link, videoId } = await waitForLink(up);
    await viewer.goto(link);
    await waitPlaying(viewer, 120_000 + ((8 * 8e6) / bps) * 1000 * 5);
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
    let frameAt: number;
    try {
      frameAt = await waitFrameAt(viewer, target, 180_000 + ((16 * 8e6) / bps) * 1000);
    } finally {
      watching = false;
      await watcher;
    }
    const [vt, ut] = [await getTrace(viewer), await getTrace(up.page)];
    if (TRACE_DIR) await writeFile(join(TRACE_DIR, `seek-${l.mbit}-${Math.round(fraction * 100)}-${Date.now()}.json`), JSON.stringify({ t0, viewer: vt, uploader: ut }));
    const snapped = vt.find((e) => e.t >= t0 && e.ev === 'seek-snapped');
    const slot = snapped ? slotOf(snapped.to as number) : candidate;
    const plan = await planInfo(up.page);
    const after = (e: TraceEntry) => e.t >= t0;
    const isSlot = (e: TraceEntry) => e.slot === slot;
    const loads = [0, 1].map((track) => first(vt, (e) => after(e) && e.ev === 'seg-loaded' && isSlot(e) && e.track === track)?.t);
    const loaded = loads.filter((x): x is number => x !== undefined);
    // the runner logs in UTC with µs; the host clock is the pages' clock (same machine)
    const since = t0 - offset - 1000;
    const [runUploaded, runDone] = [await runnerEvents(videoId, 'slot uploaded', since), await runnerEvents(videoId, 'job done', since)];
    const inSlots = (e: TraceEntry, k: string) => Array.isArray(e[k]) && (e[k] as number[]).includes(slot);
    const at: Record<(typeof STAGES)[number], number | undefined> = {
      'prioritize acked (viewer)': first(vt, (e) => after(e) && e.ev === 'prioritize-acked')?.t,
      'uploader got the priority': first(ut, (e) => after(e) && e.ev === 'priority' && inSlots(e, 'slots'))?.t,
      'assigned (POST next, or leased by the priority answer)': first(ut, (e) => after(e) && (e.ev === 'next-response' || e.ev === 'lease') && inSlots(e, 'slots'))?.t,
      'link free for it (natural PUTs aborted or done)': first(ut, (e) => after(e) && e.ev === 'put-admitted' && isSlot(e))?.t,
      'segments built': first(ut, (e) => after(e) && e.ev === 'built' && isSlot(e))?.t,
      'PUT started': first(ut, (e) => after(e) && e.ev === 'put-start' && isSlot(e))?.t,
      'PUT done': first(ut, (e) => after(e) && e.ev === 'put-done' && isSlot(e))?.t,
      'reported uploaded': first(ut, (e) => after(e) && e.ev === 'reported' && isSlot(e))?.t,
      'runner: slot uploaded (log)': runUploaded.has(slot) ? runUploaded.get(slot)! + offset : undefined,
      'runner: job done (log)': runDone.has(slot) ? runDone.get(slot)! + offset : undefined,
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
      floorMs: ((plan.slots[slot]! * 8) / bps) * 1000,
      ttffMs: linkShown && firstFrame ? firstFrame - linkShown : null,
      firstUploadMs: linkShown && slot0Done ? slot0Done - linkShown : null,
      firstFloorMs: (((plan.init + plan.slots[0]!) * 8) / bps) * 1000,
      stages,
      ...linkSharing(ut, slot, t0),
    };
  } finally {
    await viewer.close().catch(() => undefined);
    await up.close();
  }
}

/** Priority off: one natural-order upload, three viewers (no prioritize, nohint=1) seeking to 25/50/75 %. */
async function seekRunOff(b: Browsers, file: string, l: Link): Promise<{ fraction: number; ms: number; slot: number }[]> {
  const up = await openShapedUploader(b, file, l);
  const viewers: Page[] = [];
  try {
    const { link, videoId } = await waitForLink(up);
    for (let i = 0; i < POSITIONS.length; i++) {
      const v = await b.view.newPage();
      viewers.push(v);
      await v.goto(`${link}&noprioritize=1`);
    }
    await Promise.all(viewers.map((v) => waitPlaying(v, 180_000)));
    const status = await getStatus(videoId);
    const seeks = await Promise.all(
      viewers.map(async (v, i) => {
        const duration = await v.evaluate(() => document.querySelector('video')!.duration);
        const target = duration * POSITIONS[i]!;
        return { target, t0: await seek(v, target), slot: status.slots.findLastIndex((s) => s.start <= target + 1e-6) };
      }),
    );
    const totalBytes = (await stat(file)).size;
    const naturalS = (totalBytes * 8) / rateOf(l);
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

/** ≤ 1.3 × floor + 0.3 s (issue 7), and ≤ 2.0 s absolute on the main link */
function seekTarget(l: Link, v: number | null, floor: number | null): { text: string; met: boolean } {
  const abs = l === MAIN;
  const met = v !== null && floor !== null && v <= 1.3 * floor + 300 && (!abs || v <= 2000);
  return { text: `${abs ? '≤ 2.0 s and ' : ''}≤ 1.3 × floor + 0.3 s`, met };
}

async function onTrials(b: Browsers, file: string, l: Link, positions: number[], trials: number, params: Record<string, string | number> = {}, what = ''): Promise<OnTrial[]> {
  const on: OnTrial[] = [];
  for (let k = 0; k < trials; k++) {
    for (const f of positions) {
      try {
        const t = await seekTrialOn(b, file, f, l, params);
        on.push(t);
        log(
          `${what}${linkLabel(l)} priority on ${f * 100} % (slot ${t.slot}): ${(t.seekMs / 1000).toFixed(2)} s (floor ${(t.floorMs / 1000).toFixed(2)} s; ` +
            `first frame ${((t.ttffMs ?? NaN) / 1000).toFixed(2)} s; shared ${t.sharedMs?.toFixed(0) ?? '—'} ms with ${t.sharedWith}); ` +
            Object.entries(t.stages)
              .map(([k2, v]) => `${k2} ${v === null ? '—' : (v / 1000).toFixed(2)}`)
              .join(' · '),
        );
      } catch (e) {
        log(`${what}${linkLabel(l)} priority on ${f * 100} % failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
  return on;
}

function seekRows(idBase: string, label: string, l: Link, on: OnTrial[], positions: number[]): Map<number, number | null> {
  const medians = new Map<number, number | null>();
  for (const f of positions) {
    const ts = on.filter((t) => t.fraction === f);
    const v = ts.length ? median(ts.map((t) => t.seekMs)) : null;
    const floor = ts.length ? median(ts.map((t) => t.floorMs)) : null;
    const shared = ts.map((t) => t.sharedMs).filter((x): x is number => x !== null);
    medians.set(f, v);
    rows.push(
      row(
        `${idBase}.${f * 100}`,
        `Seek-to-play at ${f * 100} %, ${label}, ${linkLabel(l)}, priority on (median of ${ts.length}; baseline: the part's bytes / link rate)`,
        v,
        'ms',
        floor,
        seekTarget(l, v, floor),
        shared.length
          ? `the part's PUT shared the link with other PUTs for ${median(shared).toFixed(0)} ms (median; ${ts.map((t) => t.sharedWith).join('/')} other PUTs overlapping)`
          : undefined,
      ),
    );
  }
  return medians;
}

function stageRows(idBase: string, l: Link, on: OnTrial[]): void {
  let prev = 0;
  STAGES.forEach((k, i) => {
    const xs = on.map((t) => t.stages[k]).filter((x): x is number => x !== null);
    const v = xs.length ? median(xs) : null;
    rows.push(row(`${idBase}.s${String(i).padStart(2, '0')}`, `Seek stage, ${linkLabel(l)} (priority on, median since the seek): ${k}`, v, 'ms', null, null, v !== null ? `+${(v - prev).toFixed(0)} ms` : undefined));
    if (v !== null) prev = v;
  });
}

function firstFrameRows(l: Link, on: OnTrial[]): void {
  const tt = on.filter((t) => t.ttffMs !== null);
  if (!tt.length) return;
  const ttff = median(tt.map((t) => t.ttffMs!));
  const physical = median(tt.map((t) => t.firstFloorMs));
  const upl = tt.map((t) => t.firstUploadMs).filter((x): x is number => x !== null);
  const abs = l === MAIN;
  rows.push(
    row(
      `3.${linkId(l)}`,
      `First frame on a fresh link, ${linkLabel(l)} (link shown → first frame; median of ${tt.length}; baseline: (init + first part bytes) / link rate)`,
      ttff,
      'ms',
      physical,
      { text: `${abs ? '≤ 2.0 s and ' : ''}≤ 1.3 × floor + 0.3 s`, met: ttff <= 1.3 * physical + 300 && (!abs || ttff <= 2000) },
      upl.length ? `part 0 PUT done ${median(upl).toFixed(0)} ms after the link was shown (median)` : undefined,
    ),
  );
}

async function bench1and3(b: Browsers, m: Media): Promise<void> {
  const file = await long720(m);
  const size = (await stat(file)).size;
  const onMain: OnTrial[] = [];
  for (const l of LINKS) {
    await setLink(l);
    const positions = positionsOn(l);
    const extra = Object.keys(EXTRA_PARAMS).length ? `, NOT the default settings: ${new URLSearchParams(EXTRA_PARAMS).toString()}` : '';
    log(`1: seek-to-play, ${(size / MiB).toFixed(0)} MiB / 30 min 720p B-frame source, ${linkLabel(l)}, ${trialsOn(l)} trial(s) × ${positions.length} position(s), priority on${extra}`);
    const on = await onTrials(b, file, l, positions, trialsOn(l), EXTRA_PARAMS);
    const med = seekRows(`1.${linkId(l)}`, '720p B-frames', l, on, positions);
    stageRows(`1.${linkId(l)}`, l, on);
    firstFrameRows(l, on);
    if (l === MAIN) {
      onMain.push(...on);
      // the issue-4 noise source on the main link, one trial per position
      if (NOISE) {
        const noise = await long360(m);
        const onNoise = await onTrials(b, noise, l, positions, 1, {}, 'noise 360p: ');
        seekRows(`1.${linkId(l)}x`, '360p noise (issue 4 source)', l, onNoise, positions);
      }
      if (QUICK && !ONLY?.has('1n')) {
        log('1: priority off (natural order) skipped with --quick (add --only …,1n to run it)');
        continue;
      }
      log(`1: priority off (natural order, three viewers at 25/50/75 %), ${linkLabel(l)}…`);
      let off: { fraction: number; ms: number; slot: number }[] = [];
      try {
        off = await seekRunOff(b, file, l);
      } catch (e) {
        log(`priority off failed: ${(e as Error).message.split('\n')[0]}`);
      }
      for (const f of POSITIONS) {
        const o = off.find((x) => x.fraction === f);
        const onMs = med.get(f) ?? null;
        rows.push(
          row(
            `1.${linkId(l)}.${f * 100}n`,
            `Seek-to-play at ${f * 100} %, ${linkLabel(l)}, priority off: natural order (baseline: priority on)`,
            o?.ms ?? null,
            'ms',
            onMs,
            f === 0.75 && o && onMs ? { text: '≥ 50 × priority on', met: o.ms / onMs >= 50 } : null,
          ),
        );
      }
    }
  }
  await setLink(MAIN);
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

// ---- 0: the link itself ------------------------------------------------------------------------

async function bench0(): Promise<void> {
  for (const l of LINKS) {
    await setLink(l);
    const mb = Math.max(2, Math.min(32, Math.round(l.mbit * 0.75)));
    const r = await measureLink(l, mb);
    linkRate.set(l, r.mbit * 1e6);
    rows.push(
      row(
        `0.${linkId(l)}`,
        `Link self-check, ${linkLabel(l)}: one raw PUT of ${mb} MiB through the ${LINK_MODE === 'netns' ? 'namespace uplink (curl)' : 'CDP-throttled link'} (payload rate; baseline: nominal rate)`,
        r.mbit,
        'Mbit/s',
        l.mbit,
        null,
        `${r.detail}; ${LINK_MODE === 'netns' ? `tbf ${l.mbit}mbit, queue ${QUEUE_MS} ms; the ${l.rttMs} ms round trip is added in the browser (CDP latency)` : 'CDP throttling'}; every floor below uses this rate`,
      ),
    );
    log(`0: ${linkLabel(l)}: ${r.detail}`);
  }
  await setLink(MAIN);
}

// ---- 4: upload goodput vs a raw single PUT stream ------------------------------------------------

interface Upload {
  bytes: number;
  ms: number;
  duration: number;
  slots: number;
  tracks: number;
  createBody: string;
}

/** Uploads `file` with the page's defaults (plus `params`) through the shaped link until complete. */
async function fullUpload(up: UploaderPage, timeoutMs: number): Promise<Upload> {
  const seen: { createBody: string | null } = { createBody: null };
  up.page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/api/videos') seen.createBody = r.postData();
  });
  await waitForLink(up);
  await waitForState(up, ['complete'], timeoutMs);
  const tr = await getTrace(up.page);
  const t0 = first(tr, (e) => e.ev === 'link-shown')!.t;
  const tEnd = Math.max(...tr.filter((e) => e.ev === 'reported').map((e) => e.t));
  const bytes = await up.page.evaluate(() => (window as unknown as { chunkstreamProgress: { bytesTotal: number } }).chunkstreamProgress.bytesTotal);
  const plan = await planInfo(up.page);
  const tracks = await up.page.evaluate(() => (window as unknown as { chunkstream: { analysis: { tracks: unknown[] } } }).chunkstream.analysis.tracks.length);
  if (!seen.createBody) throw new Error('did not see the POST /api/videos body');
  return { bytes, ms: tEnd - t0, duration: plan.duration, slots: plan.slots.length, tracks, createBody: seen.createBody };
}

/** The baseline: the same segment bytes, built before the clock starts, PUT one after another (one stream) to a second session's presigned URLs from the same page. */
async function rawPutStream(up: UploaderPage, createBody: string): Promise<{ ms: number; bytes: number }> {
  const res = await fetch(`${BASE_URL}/api/videos`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: createBody });
  if (!res.ok) throw new Error(`create: ${res.status} ${await res.text()}`);
  const session = (await res.json()) as { video_id: string; upload_secret: string; init_uploads: unknown[]; slot_count: number };
  const assignments: unknown[] = [];
  for (let guard = 0; assignments.length < session.slot_count && guard < 2000; guard++) {
    const r = await fetch(`${BASE_URL}/api/videos/${session.video_id}/next`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${session.upload_secret}` },
      body: JSON.stringify({ max: 16 }),
    });
    const body = (await r.json()) as { assignments: unknown[] };
    if (!body.assignments.length) break;
    assignments.push(...body.assignments);
  }
  return up.page.evaluate(
    async ({ inits, slots }) => {
      type Up = { track_id: number; method: string; url: string; headers: Record<string, string> };
      const cs = (window as unknown as {
        chunkstream: {
          analysis: { tracks: { id: number; initSegment: Uint8Array }[] };
          segmenter: { buildSlot(slot: number, tracks: number[]): Promise<Blob[]> };
        };
      }).chunkstream;
      const trackIndex = (id: number) => cs.analysis.tracks.findIndex((t) => t.id === id);
      const bodies: { u: Up; body: Blob | Uint8Array }[] = (inits as Up[]).map((u) => ({ u, body: cs.analysis.tracks[trackIndex(u.track_id)]!.initSegment }));
      for (const a of slots as { slot: number; uploads: Up[] }[]) {
        const built = await cs.segmenter.buildSlot(
          a.slot,
          a.uploads.map((u) => trackIndex(u.track_id)),
        );
        a.uploads.forEach((u, i) => bodies.push({ u, body: built[i]! }));
      }
      let bytes = 0;
      const t0 = performance.now();
      for (const { u, body } of bodies) {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(u.headers)) if (k.toLowerCase() !== 'content-length') headers[k] = v;
        const r = await fetch(u.url, { method: u.method || 'PUT', headers, body: body as BodyInit });
        if (!r.ok) throw new Error(`PUT ${r.status}`);
        bytes += body instanceof Blob ? body.size : body.byteLength;
      }
      return { ms: performance.now() - t0, bytes };
    },
    { inits: session.init_uploads, slots: assignments },
  );
}

/** minutes of the 720p source per link for figure 4 (~40-90 s of upload each) */
const goodputMinutes = (l: Link): number => (QUICK ? 1 : l.mbit <= 2 ? 1 : l.mbit >= 50 ? 6 : 2);

async function bench4(b: Browsers, m: Media): Promise<void> {
  for (const l of LINKS) {
    await setLink(l);
    const minutes = goodputMinutes(l);
    const file = await cut720(m, minutes);
    log(`4: goodput, ${minutes} min 720p at ${linkLabel(l)}: the uploader (defaults), then a raw single PUT stream of the same bytes`);
    let up: UploaderPage | null = null;
    try {
      up = await openShapedUploader(b, file, l);
      const u = await fullUpload(up, 30 * 60_000);
      const raw = await rawPutStream(up, u.createBody);
      const upMbps = (u.bytes * 8) / (u.ms / 1000) / 1e6;
      const rawMbps = (raw.bytes * 8) / (raw.ms / 1000) / 1e6;
      const linkMbps = rateOf(l) / 1e6;
      rows.push(
        row(
          `4.${linkId(l)}`,
          `Upload goodput, ${(u.bytes / MiB).toFixed(0)} MiB, ${linkLabel(l)} (link shown → last part reported; baseline: a raw single PUT stream of the same bytes, same page and link)`,
          upMbps,
          'Mbit/s',
          rawMbps,
          { text: '≥ 0.95 × raw PUT stream', met: upMbps >= 0.95 * rawMbps },
          `link self-check ${linkMbps.toFixed(2)} Mbit/s (one curl PUT): uploader ${(upMbps / linkMbps).toFixed(3)} of it, raw stream ${(rawMbps / linkMbps).toFixed(3)}` +
            (raw.bytes !== u.bytes ? `; raw PUTs sent ${raw.bytes} bytes, the uploader ${u.bytes}` : ''),
        ),
      );
      log(`4: ${linkLabel(l)}: uploader ${upMbps.toFixed(2)} Mbit/s, raw stream ${rawMbps.toFixed(2)} Mbit/s, link ${linkMbps.toFixed(2)}`);
    } catch (e) {
      log(`4: ${linkLabel(l)} failed: ${(e as Error).message.split('\n')[0]}`);
      rows.push(row(`4.${linkId(l)}`, `Upload goodput, ${linkLabel(l)}: failed`, null, '', null, null, (e as Error).message.split('\n')[0]));
    } finally {
      await up?.close();
    }
  }
  await setLink(MAIN);
}

// ---- 9: part duration trade-off (issue 7 item 3) -----------------------------------------------

/** us-east-1 list prices, USD per request: S3 Standard PUT/COPY/POST/LIST, GET/HEAD; SQS standard */
const PRICE = { s3Tier1: 0.005 / 1000, s3Tier2: 0.0004 / 1000, sqs: 0.4 / 1e6 };

async function counts(reset = false): Promise<Record<string, number>> {
  if (!COUNTER) return {};
  const r = await fetch(`${COUNTER}/__counts${reset ? '/reset' : ''}`, { method: reset ? 'POST' : 'GET' });
  return ((await r.json()) as { counts: Record<string, number> }).counts;
}

function priced(c: Record<string, number>): { tier1: number; tier2: number; sqs: number; usd: number; detail: string } {
  const sum = (pred: (k: string) => boolean) => Object.entries(c).reduce((n, [k, v]) => n + (pred(k) ? v : 0), 0);
  const tier1 = sum((k) => /^s3\.(PUT|COPY|POST|LIST)/.test(k));
  const tier2 = sum((k) => /^s3\.(GET|HEAD|OPTIONS)/.test(k)); // CORS preflights bill as "other requests"
  const sqs = sum((k) => k.startsWith('sqs.') && !k.endsWith('.empty'));
  return {
    tier1,
    tier2,
    sqs,
    usd: tier1 * PRICE.s3Tier1 + tier2 * PRICE.s3Tier2 + sqs * PRICE.sqs,
    detail: Object.entries(c)
      .sort()
      .map(([k, v]) => `${k} ${v}`)
      .join(', '),
  };
}

/** The 3-hour file's create request at part duration `seg` (captured from the page, not sent), then created N times from here. */
async function threeHour(b: Browsers, file: string, seg: number): Promise<{ slots: number; bodyBytes: number; createMs: number; mpdBytes: number; stateBytes: number | null }> {
  const page = await b.view.newPage();
  let body: string | null = null;
  try {
    await page.route('**/api/videos', async (route) => {
      if (route.request().method() === 'POST') {
        body = route.request().postData();
        await route.abort();
      } else await route.continue();
    });
    await page.goto(`${BASE_URL}/?seg=${seg}`);
    await page.evaluate(() => localStorage.clear());
    await page.setInputFiles('#file', file);
    for (let i = 0; i < 1200 && body === null; i++) await sleep(100); // the page retries an aborted create: take the first
  } finally {
    await page.close().catch(() => undefined);
  }
  if (!body) throw new Error('no create request captured');
  const reqBody: string = body;
  const times: number[] = [];
  let created: { video_id: string; manifest_url: string } | null = null;
  for (let i = 0; i < (QUICK ? 3 : 5); i++) {
    const t0 = performance.now();
    const res = await fetch(`${BASE_URL}/api/videos`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: reqBody });
    const j = (await res.json()) as { video_id: string; manifest_url: string; slot_count?: number };
    times.push(performance.now() - t0);
    if (!res.ok) throw new Error(`create ${res.status}: ${JSON.stringify(j)}`);
    created = j;
  }
  const mpd = await fetch(created!.manifest_url.startsWith('http') ? created!.manifest_url : `${BASE_URL}${created!.manifest_url}`).then((r) => r.arrayBuffer());
  let stateBytes: number | null = null;
  if (COUNTER) {
    const r = await fetch(`${COUNTER}/${BUCKET}/v/${created!.video_id}/state.json`);
    if (r.ok) stateBytes = (await r.arrayBuffer()).byteLength;
  }
  const slots = (await getStatus(created!.video_id)).slot_count;
  return { slots, bodyBytes: Buffer.byteLength(reqBody), createMs: median(times), mpdBytes: mpd.byteLength, stateBytes };
}

async function bench9(b: Browsers, m: Media): Promise<void> {
  await setLink(MAIN);
  const file = await long720(m);
  const countFile = await cut720(m, QUICK ? 1 : 2);
  const big = await long3h(m);
  const positions = QUICK ? [0.5] : POSITIONS;
  for (const seg of SEGS) {
    const params = { seg };
    log(`9: part duration ${seg} s: seeks at ${linkLabel(MAIN)}, a counted full upload, a 3-hour file's create`);
    const on = await onTrials(b, file, MAIN, positions, 1, params, `seg ${seg}: `);
    const seekMs = on.length ? median(on.map((t) => t.seekMs)) : null;
    const floorMs = on.length ? median(on.map((t) => t.floorMs)) : null;
    const ttff = on.filter((t) => t.ttffMs !== null).map((t) => t.ttffMs!);
    const cols: Record<string, string> = {
      'part (s)': String(seg),
      'seek p50 (ms)': seekMs === null ? '—' : seekMs.toFixed(0),
      'part floor (ms)': floorMs === null ? '—' : floorMs.toFixed(0),
      'first frame p50 (ms)': ttff.length ? median(ttff).toFixed(0) : '—',
    };
    let note = '';
    let up: UploaderPage | null = null;
    try {
      up = await openShapedUploader(b, countFile, MAIN, params);
      await counts(true);
      const u = await fullUpload(up, 20 * 60_000);
      await sleep(3000); // the worker's last job and the session's clean-up
      const c = await counts();
      const p = priced(c);
      const perHour = 3600 / u.duration;
      const perPartTrack = (c['s3.PUT.presigned'] ?? 0) / (u.slots * u.tracks);
      cols['goodput (Mbit/s)'] = ((u.bytes * 8) / (u.ms / 1000) / 1e6).toFixed(2);
      if (COUNTER) {
        cols['S3 PUT/COPY/POST/LIST per video-h'] = (p.tier1 * perHour).toFixed(0);
        cols['S3 GET per video-h'] = (p.tier2 * perHour).toFixed(0);
        cols['SQS per video-h'] = (p.sqs * perHour).toFixed(0);
        cols['USD per video-h'] = `$${(p.usd * perHour).toFixed(4)}`;
        cols['S3 tier-1 per part·track'] = (p.tier1 / (u.slots * u.tracks)).toFixed(2);
        note += `counted over a ${(u.duration / 60).toFixed(0)}-min upload (${u.slots} parts × ${u.tracks} tracks, ${(u.ms / 1000).toFixed(0)} s), scaled ×${perHour.toFixed(1)}: ${p.detail}; presigned PUTs per part·track ${perPartTrack.toFixed(2)}. `;
      }
    } catch (e) {
      note += `counted upload failed: ${(e as Error).message.split('\n')[0]}. `;
    } finally {
      await up?.close();
    }
    try {
      const h = await threeHour(b, big, seg);
      cols['3 h: parts'] = String(h.slots);
      cols['3 h: MPD (KiB)'] = (h.mpdBytes / 1024).toFixed(1);
      cols['3 h: create p50 (ms)'] = h.createMs.toFixed(0);
      cols['3 h: create body (KiB)'] = (h.bodyBytes / 1024).toFixed(0);
      cols['3 h: state.json (KiB)'] = h.stateBytes === null ? '—' : (h.stateBytes / 1024).toFixed(1);
    } catch (e) {
      note += `3-hour create failed: ${(e as Error).message.split('\n')[0]}. `;
    }
    const r = row(
      `9.${String(seg).padStart(2, '0')}`,
      `Part duration ${seg} s: seek-to-play at ${linkLabel(MAIN)} (median over ${on.length} seeks at ${positions.map((f) => `${f * 100} %`).join('/')}; baseline: the part's bytes / link rate)`,
      seekMs,
      'ms',
      floorMs,
      seekTarget(MAIN, seekMs, floorMs),
      note.trim() || undefined,
    );
    r.table = { name: 'Part duration trade-off (issue 7 item 3)', cols };
    rows.push(r);
    log(`9: seg ${seg}: ${JSON.stringify(cols)}`);
  }
}

// ---- 5: segmentation throughput and memory ----------------------------------------------------

async function segmentBundle(): Promise<string> {
  return bundleForPage(join(here, 'segment-page.ts'));
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
  log(`link mode: ${LINK_MODE}${LINK_MODE === 'netns' ? ` (uploader's Chromium in the namespace, tbf queue ${QUEUE_MS} ms, round trip by CDP latency)` : ' (CDP throttling)'}`);
  const upBrowser = await launch(LINK_MODE === 'netns' ? { executablePath: NETNS_CHROMIUM } : {});
  const viewBrowser = await launch();
  // tsx compiles this file with esbuild's keepNames: functions passed to page.evaluate may call
  // its `__name` helper, which the page does not have
  for (const br of [upBrowser, viewBrowser]) await br.context.addInitScript({ content: 'globalThis.__name = globalThis.__name || ((f) => f);' });
  const b: Browsers = { up: upBrowser.context, view: viewBrowser.context, viewDataDir: viewBrowser.userDataDir };
  try {
    const steps: [string, () => Promise<void>][] = [
      ['0', () => bench0()],
      ['2', () => bench2(b.view, m)],
      ['5', () => bench5(b.view, b.viewDataDir, m)],
      ['4', () => bench4(b, m)],
      ['1', () => bench1and3(b, m)],
      ['9', () => bench9(b, m)],
    ];
    for (const [n, fn] of steps) {
      if (n !== '0' && !enabled(n) && !(n === '1' && (enabled('3') || enabled('1n')))) continue;
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
    await upBrowser.close();
    await viewBrowser.close();
    await m.cleanup();
  }
  rows.sort((a, b2) => a.id.localeCompare(b2.id, 'en', { numeric: true }));
  console.log('');
  printTable(rows);
  console.log(`\n(${((Date.now() - started) / 60000).toFixed(1)} min${QUICK ? ', --quick' : ''}; link mode ${LINK_MODE})`);
  if (OUT) {
    await writeFile(OUT, JSON.stringify(rows, null, 2));
    log(`wrote ${OUT}`);
  }
}

await main();
