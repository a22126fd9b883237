/**
 * Resume without picking the file again, where the browser allows it (Chromium's File System Access
 * API): the page picks files with `showOpenFilePicker` (or takes the handle of a dropped file), keeps
 * each upload's `FileSystemFileHandle` in IndexedDB by video id (handles are structured-cloneable;
 * localStorage holds only strings), and Resume in "My videos" reads the file through it again. The
 * file then goes through the page's usual start path (fingerprint → stored session → same link).
 * Anywhere this is not possible (no handle kept, no API, permission refused, file moved or changed)
 * the caller falls back to asking for the file.
 *
 * lib.dom has `FileSystemFileHandle` but not the picker, the permission methods nor
 * `DataTransferItem.getAsFileSystemHandle`: the few parts used are declared here.
 */

export interface HandlePermissionDescriptor {
  mode: 'read' | 'readwrite';
}

/** The parts of a `FileSystemFileHandle` used for resuming (the permission methods are Chromium's). */
export interface FileHandleLike {
  readonly kind: 'file' | 'directory';
  readonly name: string;
  getFile(): Promise<File>;
  queryPermission?(desc: HandlePermissionDescriptor): Promise<PermissionState>;
  requestPermission?(desc: HandlePermissionDescriptor): Promise<PermissionState>;
}

export interface OpenFilePickerOptions {
  id?: string;
  multiple?: boolean;
  excludeAcceptAllOption?: boolean;
  types?: { description?: string; accept: Record<string, string[]> }[];
}

interface PickerWindow {
  showOpenFilePicker?: (options?: OpenFilePickerOptions) => Promise<FileSystemFileHandle[]>;
}

interface HandleItem {
  getAsFileSystemHandle?: () => Promise<FileSystemHandle | null>;
}

/** `window.showOpenFilePicker`, bound, when this browser has it (Chromium in a secure context). */
export function filePicker(): ((options?: OpenFilePickerOptions) => Promise<FileSystemFileHandle[]>) | null {
  const w = globalThis as PickerWindow;
  const pick = w.showOpenFilePicker;
  return typeof pick === 'function' ? pick.bind(globalThis) : null;
}

/** Whether this browser can reopen a file later through a kept handle. */
export function canKeepHandles(): boolean {
  return filePicker() !== null && typeof globalThis.indexedDB !== 'undefined';
}

/**
 * The handle of a dropped file, when the browser gives one. Must be called synchronously in the
 * `drop` event (the items are unreadable afterwards); the promise may resolve later.
 */
export function handleOfDroppedItem(item: DataTransferItem | null | undefined): Promise<FileSystemFileHandle | null> {
  const get = (item as HandleItem | null | undefined)?.getAsFileSystemHandle;
  if (!item || typeof get !== 'function') return Promise.resolve(null);
  try {
    return get
      .call(item)
      .then((h) => (h && h.kind === 'file' ? (h as FileSystemFileHandle) : null))
      .catch(() => null);
  } catch {
    return Promise.resolve(null);
  }
}

/** A cancelled picker (the user closed the dialog): not an error. */
export function isAbort(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'AbortError';
}

function errorName(e: unknown): string {
  return typeof e === 'object' && e !== null && typeof (e as { name?: unknown }).name === 'string' ? (e as { name: string }).name : '';
}

// ---------------------------------------------------------------------------------------------
// The store: video id → { handle, file name, when saved }

export interface HandleRecord<H> {
  videoId: string;
  handle: H;
  fileName: string;
  /** the file's fingerprint when it was picked (lib/fingerprint.ts) */
  fingerprint: string;
  savedAt: number;
}

/** The storage under the handle store: IndexedDB in the page, a Map in tests. */
export interface RecordBackend<H> {
  get(videoId: string): Promise<HandleRecord<H> | undefined>;
  put(record: HandleRecord<H>): Promise<void>;
  delete(videoId: string): Promise<void>;
  /** Deletes, in one transaction, the records `drop` says yes to; returns their ids. */
  deleteWhere(drop: (r: HandleRecord<H>) => boolean): Promise<string[]>;
  /** All the video ids kept. */
  keys(): Promise<string[]>;
}

export function memoryBackend<H>(): RecordBackend<H> & { readonly map: Map<string, HandleRecord<H>> } {
  const map = new Map<string, HandleRecord<H>>();
  return {
    map,
    get: async (id) => map.get(id),
    put: async (r) => {
      map.set(r.videoId, r);
    },
    delete: async (id) => {
      map.delete(id);
    },
    deleteWhere: async (drop) => {
      const gone = [...map.values()].filter(drop).map((r) => r.videoId);
      for (const id of gone) map.delete(id);
      return gone;
    },
    keys: async () => [...map.keys()],
  };
}

const DB_NAME = 'chunkstream';
const DB_VERSION = 1;
const STORE = 'file-handles';

function done<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error ?? new Error('IndexedDB request failed'));
  });
}

function finished(tx: IDBTransaction): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error ?? new Error('IndexedDB transaction failed'));
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

/** IndexedDB `chunkstream` / `file-handles`, keyed by video id; null without IndexedDB. */
export function indexedDbBackend<H>(factory: IDBFactory | undefined = globalThis.indexedDB): RecordBackend<H> | null {
  if (!factory) return null;
  let opening: Promise<IDBDatabase> | null = null;
  const db = (): Promise<IDBDatabase> => {
    opening ??= new Promise<IDBDatabase>((resolve, reject) => {
      const req = factory.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = () => {
        if (!req.result.objectStoreNames.contains(STORE)) req.result.createObjectStore(STORE, { keyPath: 'videoId' });
      };
      req.onsuccess = () => {
        const d = req.result;
        d.onversionchange = () => {
          d.close();
          opening = null;
        };
        resolve(d);
      };
      req.onerror = () => reject(req.error ?? new Error('IndexedDB open failed'));
      req.onblocked = () => reject(new Error('IndexedDB open blocked'));
    });
    opening.catch(() => {
      opening = null; // try again next time
    });
    return opening;
  };
  const tx = async (mode: IDBTransactionMode): Promise<{ t: IDBTransaction; s: IDBObjectStore }> => {
    const t = (await db()).transaction(STORE, mode);
    return { t, s: t.objectStore(STORE) };
  };
  return {
    get: async (id) => {
      const { s } = await tx('readonly');
      return (await done(s.get(id))) as HandleRecord<H> | undefined;
    },
    put: async (r) => {
      const { t, s } = await tx('readwrite');
      s.put(r);
      await finished(t);
    },
    delete: async (id) => {
      const { t, s } = await tx('readwrite');
      s.delete(id);
      await finished(t);
    },
    deleteWhere: async (drop) => {
      const { t, s } = await tx('readwrite');
      const gone: string[] = [];
      const cursor = s.openCursor();
      cursor.onsuccess = () => {
        const c = cursor.result;
        if (!c) return;
        const r = c.value as HandleRecord<H>;
        if (drop(r)) {
          gone.push(r.videoId);
          c.delete();
        }
        c.continue();
      };
      await finished(t);
      return gone;
    },
    keys: async () => {
      const { s } = await tx('readonly');
      return (await done(s.getAllKeys())).map(String);
    },
  };
}

/**
 * Each upload's file handle by video id. Never throws: storage that fails (disabled, quota, a
 * browser that cannot clone handles) only means Resume will ask for the file.
 */
export class HandleStore<H> {
  constructor(
    private readonly backend: RecordBackend<H> | null,
    private readonly now: () => number = Date.now,
    private readonly onError: (what: string, e: unknown) => void = () => undefined,
  ) {}

  async save(videoId: string, handle: H, fileName: string, fingerprint: string): Promise<boolean> {
    if (!this.backend) return false;
    try {
      await this.backend.put({ videoId, handle, fileName, fingerprint, savedAt: this.now() });
      return true;
    } catch (e) {
      this.onError('save', e);
      return false;
    }
  }

  async load(videoId: string): Promise<HandleRecord<H> | null> {
    if (!this.backend) return null;
    try {
      return (await this.backend.get(videoId)) ?? null;
    } catch (e) {
      this.onError('load', e);
      return null;
    }
  }

  async forget(videoId: string): Promise<void> {
    try {
      await this.backend?.delete(videoId);
    } catch (e) {
      this.onError('forget', e);
    }
  }

  /**
   * Forgets the handles of videos that no longer need one: those not in `unfinished` (the owner's
   * list said they are complete, deleted or expired). A handle saved at or after `listedAt` (when
   * the list was asked for) is kept whatever the list says: its video may be newer than the list.
   */
  async prune(unfinished: ReadonlySet<string>, listedAt: number): Promise<string[]> {
    if (!this.backend) return [];
    try {
      return await this.backend.deleteWhere((r) => !unfinished.has(r.videoId) && r.savedAt < listedAt);
    } catch (e) {
      this.onError('prune', e);
      return [];
    }
  }

  async videoIds(): Promise<string[]> {
    try {
      return (await this.backend?.keys()) ?? [];
    } catch {
      return [];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Resume: through the kept handle, or why not

export type ResumeFallback =
  /** nothing kept for this video (picked with the plain file input, another browser, cleared) */
  | 'no-handle'
  /** the user (or the browser) refused to let the page read the file again */
  | 'denied'
  /** the file is no longer where it was: moved, renamed or deleted */
  | 'moved'
  /** the file at that place is not the one uploaded (edited, replaced) */
  | 'changed'
  /** the file is the same but this browser no longer has the upload's session (site data cleared) */
  | 'no-session'
  /** the file could not be read for another reason */
  | 'unreadable';

export type ResumeOutcome = { kind: 'file'; file: File } | { kind: 'fallback'; reason: ResumeFallback; detail?: string };

export interface ResumeDeps {
  /** The file's fingerprint (lib/fingerprint.ts). */
  fingerprint(file: File): Promise<string>;
  /** The video id of the session this page kept for that fingerprint, if any. */
  sessionVideoId(fingerprint: string): string | null;
}

const READ: HandlePermissionDescriptor = { mode: 'read' };

/**
 * Reads the file of `videoId` again through its kept handle: permission (asked for when not yet
 * granted: call this from the Resume click, the user gesture), the file, and whether it is still
 * the one uploaded (the fingerprint it had when picked, which leads to this video's session).
 */
export async function fileForResume(
  videoId: string,
  kept: Pick<HandleRecord<FileHandleLike>, 'handle' | 'fingerprint'> | null | undefined,
  deps: ResumeDeps,
): Promise<ResumeOutcome> {
  const handle = kept?.handle;
  if (!kept || !handle || handle.kind !== 'file' || typeof handle.getFile !== 'function') return { kind: 'fallback', reason: 'no-handle' };
  try {
    let permission: PermissionState = handle.queryPermission ? await handle.queryPermission(READ) : 'granted';
    if (permission !== 'granted' && handle.requestPermission) permission = await handle.requestPermission(READ);
    if (permission !== 'granted') return { kind: 'fallback', reason: 'denied' };
  } catch (e) {
    // e.g. SecurityError: requestPermission without a user gesture
    return { kind: 'fallback', reason: 'denied', detail: errorName(e) || String(e) };
  }
  let file: File;
  try {
    file = await handle.getFile();
  } catch (e) {
    const name = errorName(e);
    if (name === 'NotFoundError') return { kind: 'fallback', reason: 'moved' };
    if (name === 'NotAllowedError' || name === 'SecurityError') return { kind: 'fallback', reason: 'denied', detail: name };
    return { kind: 'fallback', reason: 'unreadable', detail: name || String(e) };
  }
  let fingerprint: string;
  try {
    fingerprint = await deps.fingerprint(file);
  } catch (e) {
    const name = errorName(e);
    if (name === 'NotFoundError') return { kind: 'fallback', reason: 'moved' };
    // NotReadableError: the file changed while it was being read
    if (name === 'NotReadableError') return { kind: 'fallback', reason: 'changed', detail: name };
    return { kind: 'fallback', reason: 'unreadable', detail: name || String(e) };
  }
  if (fingerprint !== kept.fingerprint) return { kind: 'fallback', reason: 'changed' };
  if (deps.sessionVideoId(fingerprint) !== videoId) return { kind: 'fallback', reason: 'no-session' };
  return { kind: 'file', file };
}

/** Whether the kept handle is of no more use (so it is forgotten) after this outcome. */
export function handleIsStale(o: ResumeOutcome): boolean {
  return o.kind === 'fallback' && (o.reason === 'moved' || o.reason === 'changed' || o.reason === 'no-session');
}

/** What the page says when Resume has to ask for the file. */
export function fallbackMessage(reason: ResumeFallback, title: string, fileName: string | null, apiAvailable: boolean): string {
  const pick = `To resume “${title}”, pick the same file again: the upload continues where it stopped, same link.`;
  const name = fileName ? `“${fileName}”` : 'The file';
  switch (reason) {
    case 'no-handle':
      return apiAvailable ? pick : `${pick} (This browser cannot reopen a file by itself.)`;
    case 'denied':
      return `This page was not allowed to read ${name} again. ${pick}`;
    case 'moved':
      return `${name} is no longer where it was when the upload started (moved, renamed or deleted). ${pick}`;
    case 'changed':
      return (
        `${name} has changed since the upload started (it is not the same file any more), so the upload cannot continue from it. ` +
        `To resume “${title}”, pick the original file: the upload continues where it stopped, same link.`
      );
    case 'no-session':
      return `This browser no longer has the upload details of “${title}” (site data cleared?), so it cannot continue that upload, not even from ${name}.`;
    case 'unreadable':
      return `${name} could not be read again. ${pick}`;
  }
}
