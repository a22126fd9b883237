/** Driving the real pages against the real backend (CHUNKSTREAM_URL). */
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import type { BrowserContext, CDPSession, Page, Request } from 'playwright-core';
import type { TraceEntry } from '../../src/lib/trace.ts';
import { BASE_URL } from './browser.ts';

const run = promisify(execFile);

export interface StatusJson {
  video_id: string;
  complete: boolean;
  slot_count: number;
  duration: number;
  counts: Record<string, number>;
  slots: { start: number; duration: number; state: string; reason?: string }[];
  priority_slots: number[];
}

export async function getStatus(videoId: string): Promise<StatusJson> {
  const res = await fetch(`${BASE_URL}/api/videos/${videoId}/status`);
  if (!res.ok) throw new Error(`status ${videoId}: ${res.status} ${await res.text()}`);
  return (await res.json()) as StatusJson;
}

export async function backendUp(): Promise<boolean> {
  try {
    const res = await fetch(`${BASE_URL}/api/health`, { signal: AbortSignal.timeout(2000) });
    return res.ok;
  } catch {
    return false;
  }
}

export interface UploadPage {
  page: Page;
  /** POST /api/videos requests the page made */
  creates: Request[];
  logs: string[];
}

/** Opens the uploader page (with URL params) and picks `file` through the real file input. */
export async function openUploader(context: BrowserContext, file: string, params: Record<string, string | number> = {}): Promise<UploadPage> {
  const page = await context.newPage();
  const creates: Request[] = [];
  const logs: string[] = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && new URL(r.url()).pathname === '/api/videos') creates.push(r);
  });
  page.on('console', (m) => logs.push(`[${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  const qs = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString();
  await page.goto(`${BASE_URL}/${qs ? `?${qs}` : ''}`);
  await page.setInputFiles('#file', file);
  return { page, creates, logs };
}

/** The page's `trace(...)` timeline (web/src/lib/trace.ts). */
export async function pageTrace(page: Page): Promise<TraceEntry[]> {
  return (await page.evaluate(() => (globalThis as unknown as { __chunkstreamTrace?: unknown[] }).__chunkstreamTrace ?? [])) as TraceEntry[];
}

/** How the uploader's priority feed waited, in order: 'wake' (on a wake-up URL) or 'hold' (a held poll). */
export async function feedWaits(page: Page): Promise<{ t: number; mode: string }[]> {
  return (await pageTrace(page)).filter((e) => e.ev === 'feed-wait').map((e) => ({ t: e.t, mode: String(e.mode) }));
}

export async function pageState(page: Page): Promise<string> {
  return page.evaluate(() => document.body.dataset.state ?? '');
}

/** Waits until the share link is shown; returns it with the video id. */
export async function waitForLink(up: UploadPage, timeoutMs = 30_000): Promise<{ link: string; videoId: string }> {
  await up.page.waitForFunction(
    () => !!(document.getElementById('link') as HTMLInputElement | null)?.value || document.body.dataset.state === 'error',
    null,
    { timeout: timeoutMs },
  );
  const state = await pageState(up.page);
  if (state === 'error') throw new Error(`uploader error: ${await up.page.textContent('#message')}\n${up.logs.slice(-20).join('\n')}`);
  const link = await up.page.inputValue('#link');
  const videoId = new URL(link).searchParams.get('v') ?? '';
  return { link, videoId };
}

export async function waitForComplete(up: UploadPage, timeoutMs: number): Promise<void> {
  await up.page.waitForFunction(() => ['complete', 'error'].includes(document.body.dataset.state ?? ''), null, { timeout: timeoutMs, polling: 250 });
  if ((await pageState(up.page)) !== 'complete') {
    throw new Error(`upload failed: ${await up.page.textContent('#message')}\n${up.logs.slice(-30).join('\n')}`);
  }
}

export function manifestUrl(videoId: string): string {
  return `${BASE_URL}/v/${videoId}/manifest.mpd`;
}

/** Gray-level statistics of a PNG (decoded by ffmpeg): mean, standard deviation, distinct levels. */
export async function imageStats(png: Buffer | string): Promise<{ mean: number; std: number; distinct: number }> {
  const input = typeof png === 'string' ? png : 'pipe:0';
  const child = execFile('ffmpeg', ['-v', 'error', '-i', input, '-f', 'rawvideo', '-pix_fmt', 'gray', 'pipe:1'], {
    encoding: 'buffer',
    maxBuffer: 64 * 1024 * 1024,
  });
  const chunks: Buffer[] = [];
  child.stdout?.on('data', (d: Buffer) => chunks.push(d));
  if (typeof png !== 'string') child.stdin?.end(png);
  await new Promise<void>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`ffmpeg exited ${code}`))));
  });
  const px = Buffer.concat(chunks);
  let sum = 0;
  let sq = 0;
  const seen = new Set<number>();
  for (const v of px) {
    sum += v;
    sq += v * v;
    seen.add(v);
  }
  const n = Math.max(1, px.length);
  const mean = sum / n;
  return { mean, std: Math.sqrt(Math.max(0, sq / n - mean * mean)), distinct: seen.size };
}

/**
 * Resident memory (bytes) of the biggest Chromium renderer (the uploader page) of the browser
 * using `userDataDir`: VmRSS, and RssAnon (VmRSS minus file-backed pages such as the binary).
 */
export async function rendererRss(userDataDir: string): Promise<{ rss: number; anon: number }> {
  const procs = new Map<number, { ppid: number; cmd: string }>();
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = await readFile(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const cmd = (await readFile(`/proc/${d}/cmdline`, 'utf8')).replace(/\0/g, ' ');
      procs.set(Number(d), { ppid, cmd });
    } catch {
      /* process went away */
    }
  }
  const roots = [...procs].filter(([, p]) => p.cmd.includes(userDataDir) && !p.cmd.includes('--type=')).map(([pid]) => pid);
  const inTree = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 10; hops++) {
      if (roots.includes(p)) return true;
      p = procs.get(p)?.ppid ?? 0;
    }
    return false;
  };
  const best = { rss: 0, anon: 0 };
  for (const [pid, p] of procs) {
    if (!p.cmd.includes('--type=renderer') || !inTree(pid)) continue;
    try {
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
      if (kb('VmRSS') > best.rss) {
        best.rss = kb('VmRSS');
        best.anon = kb('RssAnon');
      }
    } catch {
      /* gone */
    }
  }
  return best;
}

export async function ffprobeFrames(url: string): Promise<number> {
  const { stdout } = await run(
    'ffprobe',
    ['-v', 'error', '-count_frames', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_frames', '-of', 'csv=p=0', url],
    { timeout: 180_000, maxBuffer: 16 * 1024 * 1024 },
  );
  return Number(stdout.trim().split('\n')[0]);
}


export interface MemoryPeaks {
  /** CDP JSHeapUsedSize */
  heap: number;
  /** the renderer's VmRSS and RssAnon (rendererRss) */
  rss: number;
  anon: number;
  samples: number;
}

/**
 * Samples the page's memory every `everyMs` until `stop()`: JS heap through CDP, the renderer's
 * resident memory from /proc. `mark()` returns the peaks since the last mark (a stage's peaks).
 */
export async function sampleMemory(context: BrowserContext, page: Page, userDataDir: string, everyMs = 500): Promise<{ mark: () => MemoryPeaks; stop: () => Promise<MemoryPeaks> }> {
  const cdp: CDPSession = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  const zero = (): MemoryPeaks => ({ heap: 0, rss: 0, anon: 0, samples: 0 });
  const total = zero();
  let stage = zero();
  let sampling = true;
  const loop = (async () => {
    while (sampling) {
      try {
        const { metrics } = await cdp.send('Performance.getMetrics');
        const heap = metrics.find((m) => m.name === 'JSHeapUsedSize')?.value ?? 0;
        const mem = await rendererRss(userDataDir);
        for (const p of [total, stage]) {
          p.heap = Math.max(p.heap, heap);
          p.rss = Math.max(p.rss, mem.rss);
          p.anon = Math.max(p.anon, mem.anon);
          p.samples++;
        }
      } catch {
        /* page closing */
      }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    mark: () => {
      const done = stage;
      stage = zero();
      return done;
    },
    stop: async () => {
      sampling = false;
      await loop;
      return total;
    },
  };
}

/**
 * The parts a request reports uploaded: the single route's slot, or the `uploaded` list a
 * `POST …/next` carries (how the page reports while nobody watches). Empty for any other request.
 */
export function reportedSlots(r: Request): number[] {
  if (r.method() !== 'POST') return [];
  const path = new URL(r.url()).pathname;
  const single = /\/slots\/(\d+)\/uploaded$/.exec(path);
  if (single) return [Number(single[1])];
  if (!/^\/api\/videos\/[^/]+\/next$/.test(path)) return [];
  const body = r.postDataJSON() as { uploaded?: unknown } | null;
  return Array.isArray(body?.uploaded) ? body.uploaded.filter((s): s is number => typeof s === 'number') : [];
}
