/**
 * Timeline events for diagnostics and the benchmarks (web/bench): kept in
 * `window.__chunkstreamTrace` as `{t, ev, ...data}` with `t` in epoch milliseconds
 * (performance.timeOrigin + performance.now(), so pages of one browser share the clock).
 */
export interface TraceEntry {
  t: number;
  ev: string;
  [key: string]: unknown;
}

const MAX_ENTRIES = 20_000;

export function trace(ev: string, data: Record<string, unknown> = {}): void {
  const g = globalThis as { __chunkstreamTrace?: TraceEntry[] };
  const log = (g.__chunkstreamTrace ??= []);
  log.push({ ...data, t: performance.timeOrigin + performance.now(), ev });
  if (log.length > MAX_ENTRIES) log.splice(0, log.length - MAX_ENTRIES);
}
