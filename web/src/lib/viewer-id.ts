/**
 * This tab's viewer id: random, kept in sessionStorage (a reload keeps it, another tab gets its
 * own). The server keys priority windows by it, so this viewer's seek replaces only its own window.
 */
const KEY = 'chunkstream.viewer';
let cached: string | null = null;

function fresh(): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function viewerId(): string {
  if (cached) return cached;
  try {
    const stored = globalThis.sessionStorage?.getItem(KEY);
    if (stored && /^[A-Za-z0-9_-]{1,64}$/.test(stored)) return (cached = stored);
    cached = fresh();
    globalThis.sessionStorage?.setItem(KEY, cached);
  } catch {
    cached ??= fresh(); // storage disabled: one id for this page's life
  }
  return cached;
}

/** `url` with this viewer's id (and `nohint=1` when asked) as query parameters. */
export function withViewer(url: string, noHint: boolean): string {
  const sep = url.includes('?') ? '&' : '?';
  return noHint ? `${url}${sep}nohint=1` : `${url}${sep}viewer=${viewerId()}`;
}
