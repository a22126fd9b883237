/** Shared pieces of the browser benchmarks: result rows, statistics, page helpers, traces. */
import { open } from 'node:fs/promises';
import type { BrowserContext, Page } from 'playwright-core';
import { BASE_URL } from '../e2e/helpers/browser.ts';

export interface Row {
  id: string;
  name: string;
  value: number | null;
  unit: string;
  baseline: number | null;
  ratio: number | null;
  target: string | null;
  met: boolean | null;
  note?: string;
  /** also shown as a row of a side-by-side table (bench_report.py): table name, column → cell */
  table?: { name: string; cols: Record<string, string> };
}

export function row(
  id: string,
  name: string,
  value: number | null,
  unit: string,
  baseline: number | null = null,
  target: { text: string; met: boolean } | null = null,
  note?: string,
): Row {
  const ratio = value !== null && baseline !== null && baseline > 0 ? value / baseline : null;
  const r: Row = { id, name, value, unit, baseline, ratio, target: target?.text ?? null, met: target ? target.met : null };
  if (note) r.note = note;
  return r;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const MiB = 1024 * 1024;

export interface TraceEntry {
  t: number;
  ev: string;
  [k: string]: unknown;
}

export async function getTrace(page: Page): Promise<TraceEntry[]> {
  return (await page.evaluate(() => (window as unknown as { __chunkstreamTrace?: unknown[] }).__chunkstreamTrace ?? [])) as TraceEntry[];
}

export async function clearTrace(page: Page): Promise<void> {
  await page.evaluate(() => {
    (window as unknown as { __chunkstreamTrace?: unknown[] }).__chunkstreamTrace = [];
  });
}

/** page clock (performance.timeOrigin + now, epoch ms) minus this process' Date.now() */
export async function clockOffset(page: Page): Promise<number> {
  const samples: { rtt: number; off: number }[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now();
    const b = await page.evaluate(() => performance.timeOrigin + performance.now());
    const t1 = Date.now();
    samples.push({ rtt: t1 - t0, off: b - (t0 + t1) / 2 });
  }
  samples.sort((a, b) => a.rtt - b.rtt);
  return samples[0]!.off;
}

export interface UploaderPage {
  page: Page;
  logs: string[];
  close(): Promise<void>;
}

/**
 * The real uploader page with URL params, a fresh localStorage (no resume of an earlier run of
 * the same file) and `file` picked through its file input.
 */
export async function openUploader(
  context: BrowserContext,
  file: string,
  params: Record<string, string | number> = {},
  prepare?: (page: Page) => Promise<void>,
): Promise<UploaderPage> {
  const page = await context.newPage();
  await prepare?.(page);
  const logs: string[] = [];
  page.on('console', (m) => {
    logs.push(`[${m.type()}] ${m.text()}`);
    if (logs.length > 200) logs.shift();
  });
  page.on('pageerror', (e) => logs.push(`[pageerror] ${e.message}`));
  const qs = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString();
  await page.goto(`${BASE_URL}/${qs ? `?${qs}` : ''}`);
  await page.evaluate(() => localStorage.clear());
  await page.setInputFiles('#file', file);
  return { page, logs, close: () => page.close().catch(() => undefined) };
}

export async function waitForLink(up: UploaderPage, timeoutMs = 60_000): Promise<{ link: string; videoId: string }> {
  await up.page.waitForFunction(
    () => !!(document.getElementById('link') as HTMLInputElement | null)?.value || document.body.dataset.state === 'error',
    null,
    { timeout: timeoutMs, polling: 10 },
  );
  if ((await up.page.evaluate(() => document.body.dataset.state)) === 'error') {
    throw new Error(`uploader error: ${await up.page.textContent('#message')}\n${up.logs.slice(-20).join('\n')}`);
  }
  const link = await up.page.inputValue('#link');
  return { link, videoId: new URL(link).searchParams.get('v') ?? '' };
}

export async function waitForState(up: UploaderPage, states: string[], timeoutMs: number): Promise<string> {
  await up.page.waitForFunction((s) => s.includes(document.body.dataset.state ?? ''), [...states, 'error'], { timeout: timeoutMs, polling: 100 });
  const st = (await up.page.evaluate(() => document.body.dataset.state)) ?? '';
  if (st === 'error') throw new Error(`uploader error: ${await up.page.textContent('#message')}\n${up.logs.slice(-20).join('\n')}`);
  return st;
}

/** Top-level boxes of an MP4 file (type, start, size), read with 16-byte headers. */
export async function topLevelBoxes(path: string): Promise<{ type: string; start: number; size: number }[]> {
  const fh = await open(path, 'r');
  try {
    const { size: fileSize } = await fh.stat();
    const out: { type: string; start: number; size: number }[] = [];
    const head = Buffer.alloc(16);
    let at = 0;
    while (at + 8 <= fileSize) {
      await fh.read(head, 0, 16, at);
      let size = head.readUInt32BE(0);
      const type = head.toString('latin1', 4, 8);
      if (size === 1) size = Number(head.readBigUInt64BE(8));
      else if (size === 0) size = fileSize - at;
      if (size < 8) break;
      out.push({ type, start: at, size });
      at += size;
    }
    return out;
  } finally {
    await fh.close();
  }
}

export function fmt(v: number | null, digits = 3): string {
  if (v === null || !Number.isFinite(v)) return '—';
  if (Math.abs(v) >= 100) return v.toFixed(0);
  return v.toPrecision(digits);
}

export function printTable(rows: Row[]): void {
  const w = Math.min(100, Math.max(20, ...rows.map((r) => r.name.length)));
  const line = (id: string, name: string, value: string, baseline: string, ratio: string, target: string) =>
    `${id.padEnd(9)} ${name.padEnd(w)} ${value.padStart(14)} ${baseline.padStart(12)} ${ratio.padStart(8)}  ${target}`;
  console.log(line('id', 'figure', 'value', 'baseline', 'ratio', 'target'));
  console.log('-'.repeat(w + 60));
  for (const r of rows) {
    const target = r.target ? `${r.met ? 'met' : 'NOT met'}: ${r.target}` : '';
    console.log(line(r.id, r.name.slice(0, w), `${fmt(r.value)} ${r.unit}`, fmt(r.baseline), fmt(r.ratio), target));
    if (r.note) console.log(`${''.padEnd(10)}↳ ${r.note}`);
  }
}
