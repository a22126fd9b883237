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
