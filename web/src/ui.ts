/** Small shared UI helpers (formatting, canvas maps). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

export function formatRate(bytesPerSecond: number): string {
  const bits = bytesPerSecond * 8;
  if (bits >= 1e6) return `${(bits / 1e6).toFixed(bits >= 1e7 ? 0 : 1)} Mbit/s`;
  return `${Math.round(bits / 1e3)} kbit/s`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '–';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0 ? `${h} h ${String(m).padStart(2, '0')} min` : `${m} min ${String(r).padStart(2, '0')} s`;
}

export const STATE_COLORS: Record<string, string> = {
  pending: '#d6d9de',
  assigned: '#d6d9de',
  generating: '#f2b84b',
  uploading: '#f2b84b',
  uploaded: '#7fb2e5',
  published: '#2f9e5b',
  failed: '#d64545',
};

function fitCanvas(canvas: HTMLCanvasElement, cssHeight: number): { ctx: CanvasRenderingContext2D; w: number; h: number } | null {
  const ctx = canvas.getContext('2d');
  if (!ctx) return null;
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.parentElement?.clientWidth || 600;
  canvas.style.height = `${cssHeight}px`;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(cssHeight * dpr);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, cssHeight);
  return { ctx, w, h: cssHeight };
}

/** Grid of cells, one per slot, wrapping; priority slots get an outline. */
export function drawSlotMap(canvas: HTMLCanvasElement, states: readonly string[], priority: readonly number[]): void {
  const n = states.length;
  if (n === 0) return;
  const width = canvas.clientWidth || canvas.parentElement?.clientWidth || 600;
  const cell = n <= 200 ? 14 : n <= 1000 ? 8 : 4;
  const gap = cell >= 8 ? 2 : 1;
  const perRow = Math.max(1, Math.floor((width + gap) / (cell + gap)));
  const rows = Math.ceil(n / perRow);
  const fit = fitCanvas(canvas, rows * (cell + gap));
  if (!fit) return;
  const { ctx } = fit;
  const prio = new Set(priority);
  for (let i = 0; i < n; i++) {
    const x = (i % perRow) * (cell + gap);
    const y = Math.floor(i / perRow) * (cell + gap);
    ctx.fillStyle = STATE_COLORS[states[i] ?? 'pending'] ?? '#ccc';
    ctx.fillRect(x, y, cell, cell);
    if (prio.has(i) && cell >= 8) {
      ctx.strokeStyle = '#6b3fd4';
      ctx.lineWidth = 2;
      ctx.strokeRect(x + 1, y + 1, cell - 2, cell - 2);
    }
  }
}

/** Timeline bar: slot availability, buffered ranges and the playhead. */
export function drawAvailability(
  canvas: HTMLCanvasElement,
  duration: number,
  slots: readonly { start: number; duration: number; state: string }[],
  buffered: readonly [number, number][],
  playhead: number,
): void {
  const fit = fitCanvas(canvas, 18);
  if (!fit || !(duration > 0)) return;
  const { ctx, w } = fit;
  const x = (t: number) => (Math.max(0, Math.min(duration, t)) / duration) * w;
  for (const s of slots) {
    ctx.fillStyle = STATE_COLORS[s.state] ?? '#ccc';
    ctx.fillRect(x(s.start), 0, Math.max(1, x(s.start + s.duration) - x(s.start)), 12);
  }
  ctx.fillStyle = 'rgba(20, 20, 20, 0.55)';
  for (const [a, b] of buffered) ctx.fillRect(x(a), 13, Math.max(1, x(b) - x(a)), 5);
  ctx.fillStyle = '#111';
  ctx.fillRect(Math.min(w - 2, x(playhead)), 0, 2, 18);
}
