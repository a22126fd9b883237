/** Sessions kept in localStorage by file fingerprint, so a reload + picking the same file resumes. */
import type { PlanOptions } from './planner.ts';

export interface StoredSession {
  videoId: string;
  secret: string;
  watchUrl: string;
  manifestUrl: string;
  fileName: string;
  fileSize: number;
  slotCount: number;
  totalBytes: number;
  options: PlanOptions;
  createdAt: string;
  /** presentation_time_offset sent per track (absent: stored before edits were folded) */
  ptos?: number[];
}

const PREFIX = 'chunkstream:session:';

function storage(): Storage | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // disabled storage (privacy settings)
  }
}

export function loadSession(fingerprint: string): StoredSession | null {
  const raw = storage()?.getItem(PREFIX + fingerprint);
  if (!raw) return null;
  try {
    const s = JSON.parse(raw) as StoredSession;
    return typeof s.videoId === 'string' && typeof s.secret === 'string' ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(fingerprint: string, s: StoredSession): void {
  try {
    storage()?.setItem(PREFIX + fingerprint, JSON.stringify(s));
  } catch {
    /* quota or disabled: resume just won't be available */
  }
}

export function forgetSession(fingerprint: string): void {
  storage()?.removeItem(PREFIX + fingerprint);
}

/** Forgets every stored session of a video (it was deleted: its secret is of no use any more). */
export function forgetSessionsOf(videoId: string): void {
  const store = storage();
  if (!store) return;
  const keys: string[] = [];
  for (let i = 0; i < store.length; i++) {
    const key = store.key(i);
    if (key?.startsWith(PREFIX)) keys.push(key);
  }
  for (const key of keys) if (loadSession(key.slice(PREFIX.length))?.videoId === videoId) store.removeItem(key);
}
