/** Sessions kept in localStorage by file fingerprint: a deleted video's sessions are forgotten. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forgetSessionsOf, loadSession, saveSession } from '../src/lib/session-store.ts';
import type { StoredSession } from '../src/lib/session-store.ts';

/** localStorage as the browser has it (node has none by default) */
class MemoryStorage implements Storage {
  private readonly items = new Map<string, string>();
  get length(): number {
    return this.items.size;
  }
  clear(): void {
    this.items.clear();
  }
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  key(index: number): string | null {
    return [...this.items.keys()][index] ?? null;
  }
  removeItem(key: string): void {
    this.items.delete(key);
  }
  setItem(key: string, value: string): void {
    this.items.set(key, value);
  }
}

function session(videoId: string): StoredSession {
  return {
    videoId,
    secret: `secret-${videoId}`,
    watchUrl: `http://x/watch.html?v=${videoId}`,
    manifestUrl: `http://x/v/${videoId}/manifest.mpd`,
    fileName: 'a.mp4',
    fileSize: 1,
    slotCount: 1,
    totalBytes: 1,
    options: { targetDuration: 4, maxSegmentBytes: 16 << 20 },
    createdAt: new Date(0).toISOString(),
  };
}

describe('session store', () => {
  it('deleting a video forgets every stored session of it and keeps the others', () => {
    const storage = new MemoryStorage();
    Object.defineProperty(globalThis, 'localStorage', { value: storage, configurable: true });
    try {
      saveSession('fp-a', session('video-a'));
      saveSession('fp-a-copy', session('video-a')); // the same video picked from a second copy of the file
      saveSession('fp-b', session('video-b'));
      storage.setItem('other-app', 'untouched');
      forgetSessionsOf('video-a');
      assert.equal(loadSession('fp-a'), null);
      assert.equal(loadSession('fp-a-copy'), null);
      assert.equal(loadSession('fp-b')?.videoId, 'video-b');
      assert.equal(storage.getItem('other-app'), 'untouched');
    } finally {
      Reflect.deleteProperty(globalThis, 'localStorage');
    }
  });
});
