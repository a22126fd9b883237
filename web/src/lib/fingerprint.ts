/**
 * File fingerprint for resuming: size + name + a hash of a few slices (start, middle, end),
 * so picking the same file again after a reload finds its session without reading it whole.
 */
import type { ByteSource } from './analyze.ts';

const SLICE = 128 * 1024;

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** FNV-1a (2 x 32 bit) fallback for pages served without a secure context (no crypto.subtle). */
function fnv(data: Uint8Array): Uint8Array {
  let h1 = 0x811c9dc5;
  let h2 = 0x01000193 ^ 0x5bd1e995;
  for (let i = 0; i < data.length; i++) {
    h1 = Math.imul(h1 ^ data[i]!, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ data[i]!, 0x01000197) >>> 0;
  }
  const out = new Uint8Array(8);
  new DataView(out.buffer).setUint32(0, h1);
  new DataView(out.buffer).setUint32(4, h2);
  return out;
}

export async function fingerprintFile(file: ByteSource, name: string): Promise<string> {
  const size = file.size;
  const ranges: [number, number][] = [
    [0, Math.min(size, SLICE)],
    [Math.max(0, Math.floor(size / 2) - SLICE / 2), Math.min(size, Math.floor(size / 2) + SLICE / 2)],
    [Math.max(0, size - SLICE), size],
  ];
  const header = new TextEncoder().encode(`${size}\n${name}\n`);
  const parts: Uint8Array[] = [header];
  for (const [a, b] of ranges) parts.push(new Uint8Array(await file.slice(a, b).arrayBuffer()));
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.byteLength;
  }
  const subtle = globalThis.crypto?.subtle;
  if (subtle) return `v1-${hex(new Uint8Array(await subtle.digest('SHA-256', all)))}`;
  return `v1f-${hex(fnv(all))}`;
}
