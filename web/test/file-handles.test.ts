import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  canKeepHandles,
  fallbackMessage,
  fileForResume,
  filePicker,
  handleIsStale,
  handleOfDroppedItem,
  HandleStore,
  isAbort,
  memoryBackend,
} from '../src/lib/file-handles.ts';
import type { FileHandleLike, HandlePermissionDescriptor, RecordBackend, ResumeDeps, ResumeFallback } from '../src/lib/file-handles.ts';

/** A handle as Chromium's: permission state, a file, or the error getFile throws. */
function fakeHandle(opts: { permission?: PermissionState; onRequest?: PermissionState | Error; file?: File | Error; noPermissionApi?: boolean } = {}) {
  const calls: string[] = [];
  let permission = opts.permission ?? 'granted';
  const handle: FileHandleLike = {
    kind: 'file',
    name: 'clip.mp4',
    getFile: async () => {
      calls.push('getFile');
      const f = opts.file ?? new File([new Uint8Array([1, 2, 3])], 'clip.mp4');
      if (f instanceof Error) throw f;
      return f;
    },
  };
  if (!opts.noPermissionApi) {
    handle.queryPermission = async (d: HandlePermissionDescriptor) => {
      calls.push(`query:${d.mode}`);
      return permission;
    };
    handle.requestPermission = async (d: HandlePermissionDescriptor) => {
      calls.push(`request:${d.mode}`);
      const r = opts.onRequest ?? 'granted';
      if (r instanceof Error) throw r;
      permission = r;
      return r;
    };
  }
  return { handle, calls };
}

const VIDEO = 'vid-1';
const FP = 'v1-abc';
const deps = (over: Partial<ResumeDeps> = {}): ResumeDeps => ({
  fingerprint: async () => FP,
  sessionVideoId: (fp) => (fp === FP ? VIDEO : null),
  ...over,
});
const kept = (handle: FileHandleLike, fingerprint = FP) => ({ handle, fingerprint });
const reason = (o: Awaited<ReturnType<typeof fileForResume>>): ResumeFallback | 'file' => (o.kind === 'file' ? 'file' : o.reason);

describe('resume through a kept file handle', () => {
  it('granted: reads the file without asking, and it leads to the same video', async () => {
    const { handle, calls } = fakeHandle();
    const o = await fileForResume(VIDEO, kept(handle), deps());
    assert.equal(o.kind, 'file');
    assert.equal(o.kind === 'file' && o.file.name, 'clip.mp4');
    assert.deepEqual(calls, ['query:read', 'getFile']);
  });

  it('not granted yet: asks (read only) in the Resume click, then reads', async () => {
    const { handle, calls } = fakeHandle({ permission: 'prompt', onRequest: 'granted' });
    assert.equal(reason(await fileForResume(VIDEO, kept(handle), deps())), 'file');
    assert.deepEqual(calls, ['query:read', 'request:read', 'getFile']);
  });

  it('refused, or no user gesture: falls back without reading the file', async () => {
    for (const onRequest of ['denied', 'prompt', new DOMException('no gesture', 'SecurityError')] as const) {
      const { handle, calls } = fakeHandle({ permission: 'prompt', onRequest });
      assert.equal(reason(await fileForResume(VIDEO, kept(handle), deps())), 'denied', String(onRequest));
      assert.ok(!calls.includes('getFile'));
    }
    const { handle, calls } = fakeHandle({ permission: 'denied', onRequest: 'denied' });
    assert.equal(reason(await fileForResume(VIDEO, kept(handle), deps())), 'denied');
    assert.deepEqual(calls, ['query:read', 'request:read']);
  });

  it('a handle without the permission methods is read directly', async () => {
    const { handle } = fakeHandle({ noPermissionApi: true });
    assert.equal(reason(await fileForResume(VIDEO, kept(handle), deps())), 'file');
  });

  it('nothing kept (plain input, another browser, storage cleared): no-handle', async () => {
    assert.equal(reason(await fileForResume(VIDEO, null, deps())), 'no-handle');
    assert.equal(reason(await fileForResume(VIDEO, undefined, deps())), 'no-handle');
    const dir = { kind: 'directory', name: 'x', getFile: async () => new File([], 'x') } as const;
    assert.equal(reason(await fileForResume(VIDEO, kept(dir), deps())), 'no-handle');
  });

  it('the file moved, was renamed or deleted: getFile throws NotFoundError', async () => {
    const { handle } = fakeHandle({ file: new DOMException('gone', 'NotFoundError') });
    assert.equal(reason(await fileForResume(VIDEO, kept(handle), deps())), 'moved');
  });

  it('other read errors: unreadable, with the error name', async () => {
    const { handle } = fakeHandle({ file: new DOMException('busy', 'NotReadableError') });
    const o = await fileForResume(VIDEO, kept(handle), deps());
    assert.deepEqual(o, { kind: 'fallback', reason: 'unreadable', detail: 'NotReadableError' });
    const denied = fakeHandle({ file: new DOMException('no', 'NotAllowedError') });
    assert.equal(reason(await fileForResume(VIDEO, kept(denied.handle), deps())), 'denied');
  });

  it('the file at that place is another one now: its fingerprint differs', async () => {
    const { handle } = fakeHandle();
    assert.equal(reason(await fileForResume(VIDEO, kept(handle), deps({ fingerprint: async () => 'v1-other' }))), 'changed');
    // it changed while the fingerprint slices were read
    const changing = deps({
      fingerprint: async () => {
        throw new DOMException('modified', 'NotReadableError');
      },
    });
    assert.equal(reason(await fileForResume(VIDEO, kept(handle), changing)), 'changed');
    const deleted = deps({
      fingerprint: async () => {
        throw new DOMException('gone', 'NotFoundError');
      },
    });
    assert.equal(reason(await fileForResume(VIDEO, kept(handle), deleted)), 'moved');
  });

  it('same file, but this browser lost the session (or it leads to another video): no-session', async () => {
    const { handle } = fakeHandle();
    assert.equal(reason(await fileForResume(VIDEO, kept(handle), deps({ sessionVideoId: () => null }))), 'no-session');
    assert.equal(reason(await fileForResume(VIDEO, kept(handle), deps({ sessionVideoId: () => 'vid-2' }))), 'no-session');
  });

  it('a handle of no more use is forgotten; a refused or missing one is kept', () => {
    const fb = (r: ResumeFallback) => ({ kind: 'fallback', reason: r }) as const;
    assert.equal(handleIsStale(fb('moved')), true);
    assert.equal(handleIsStale(fb('changed')), true);
    assert.equal(handleIsStale(fb('no-session')), true);
    assert.equal(handleIsStale(fb('denied')), false);
    assert.equal(handleIsStale(fb('no-handle')), false);
    assert.equal(handleIsStale(fb('unreadable')), false);
    assert.equal(handleIsStale({ kind: 'file', file: new File([], 'x') }), false);
  });

  it('the fallback messages say why and what to do', () => {
    const today = 'To resume “Demo”, pick the same file again: the upload continues where it stopped, same link.';
    assert.equal(fallbackMessage('no-handle', 'Demo', null, true), today);
    assert.match(fallbackMessage('no-handle', 'Demo', null, false), /pick the same file again.*cannot reopen a file by itself/);
    assert.match(fallbackMessage('moved', 'Demo', 'demo.mp4', true), /“demo\.mp4” is no longer where it was .*moved, renamed or deleted.*pick the same file again/);
    assert.match(fallbackMessage('changed', 'Demo', 'demo.mp4', true), /“demo\.mp4” has changed since the upload started.*pick the original file/);
    assert.match(fallbackMessage('denied', 'Demo', 'demo.mp4', true), /not allowed to read “demo\.mp4” again.*pick the same file again/);
    assert.match(fallbackMessage('no-session', 'Demo', 'demo.mp4', true), /no longer has the upload details of “Demo”/);
    assert.match(fallbackMessage('unreadable', 'Demo', null, true), /^The file could not be read again/);
  });
});

describe('handle store', () => {
  it('keeps a handle by video id until it is forgotten', async () => {
    const backend = memoryBackend<string>();
    let now = 1000;
    const store = new HandleStore(backend, () => now);
    assert.equal(await store.save('a', 'handle-a', 'a.mp4', 'fp-a'), true);
    now = 2000;
    await store.save('b', 'handle-b', 'b.mp4', 'fp-b');
    assert.deepEqual(await store.load('a'), { videoId: 'a', handle: 'handle-a', fileName: 'a.mp4', fingerprint: 'fp-a', savedAt: 1000 });
    assert.equal(await store.load('zzz'), null);
    await store.forget('a');
    assert.equal(await store.load('a'), null);
    assert.deepEqual(await store.videoIds(), ['b']);
    await store.forget('a'); // twice: fine
  });

  it('saving again replaces the record (same video, file picked again)', async () => {
    let now = 1;
    const store = new HandleStore(memoryBackend<string>(), () => now);
    await store.save('a', 'old', 'a.mp4', 'fp');
    now = 5;
    await store.save('a', 'new', 'a.mp4', 'fp');
    assert.equal((await store.load('a'))?.handle, 'new');
    assert.equal((await store.load('a'))?.savedAt, 5);
    assert.deepEqual(await store.videoIds(), ['a']);
  });

  it('prune forgets the handles of videos no longer unfinished, but not those newer than the list', async () => {
    let now = 100;
    const backend = memoryBackend<string>();
    const store = new HandleStore(backend, () => now);
    await store.save('uploading', 'h1', 'u.mp4', 'f1');
    await store.save('done', 'h2', 'd.mp4', 'f2');
    await store.save('deleted-elsewhere', 'h3', 'x.mp4', 'f3');
    now = 300;
    await store.save('created-after-the-list-was-asked-for', 'h4', 'n.mp4', 'f4');
    const gone = await store.prune(new Set(['uploading']), 200);
    assert.deepEqual(gone.sort(), ['deleted-elsewhere', 'done']);
    assert.deepEqual((await store.videoIds()).sort(), ['created-after-the-list-was-asked-for', 'uploading']);
    // a later list without it removes it too
    assert.deepEqual(await store.prune(new Set(['uploading']), 400), ['created-after-the-list-was-asked-for']);
    assert.deepEqual(await store.prune(new Set(), 400), ['uploading']);
    assert.equal(backend.map.size, 0);
  });

  it('failing or missing storage never throws: Resume just asks for the file', async () => {
    const boom = async (): Promise<never> => {
      throw new DOMException('quota', 'QuotaExceededError');
    };
    const broken: RecordBackend<string> = { get: boom, put: boom, delete: boom, deleteWhere: boom, keys: boom };
    const errors: string[] = [];
    const store = new HandleStore(broken, Date.now, (what) => errors.push(what));
    assert.equal(await store.save('a', 'h', 'a.mp4', 'fp'), false);
    assert.equal(await store.load('a'), null);
    await store.forget('a');
    assert.deepEqual(await store.prune(new Set(), Date.now()), []);
    assert.deepEqual(await store.videoIds(), []);
    assert.deepEqual(errors, ['save', 'load', 'forget', 'prune']);
    const none = new HandleStore<string>(null);
    assert.equal(await none.save('a', 'h', 'a.mp4', 'fp'), false);
    assert.equal(await none.load('a'), null);
    assert.deepEqual(await none.prune(new Set(), 1), []);
  });
});

describe('browser support', () => {
  it('no picker (Firefox, Safari, node): no handles kept', () => {
    assert.equal(filePicker(), null);
    assert.equal(canKeepHandles(), false);
  });

  it('with a picker and IndexedDB: handles are kept', async () => {
    const g = globalThis as { showOpenFilePicker?: unknown; indexedDB?: unknown };
    const had = { picker: g.showOpenFilePicker, idb: g.indexedDB };
    let self: unknown = null;
    g.showOpenFilePicker = async function (this: unknown) {
      self = this;
      return [];
    };
    try {
      assert.equal(canKeepHandles(), false, 'no IndexedDB');
      g.indexedDB = {};
      assert.equal(canKeepHandles(), true);
      await filePicker()?.();
      assert.equal(self, globalThis, 'called on window (Chromium throws "Illegal invocation" otherwise)');
    } finally {
      g.showOpenFilePicker = had.picker;
      g.indexedDB = had.idb;
      if (had.picker === undefined) delete g.showOpenFilePicker;
      if (had.idb === undefined) delete g.indexedDB;
    }
  });

  it('a cancelled picker is an AbortError, nothing else is', () => {
    assert.equal(isAbort(new DOMException('The user aborted a request.', 'AbortError')), true);
    assert.equal(isAbort(new DOMException('no', 'SecurityError')), false);
    assert.equal(isAbort(new Error('AbortError')), false);
    assert.equal(isAbort(null), false);
    assert.equal(isAbort('AbortError'), false);
  });

  it('a dropped file gives its handle where the browser has getAsFileSystemHandle', async () => {
    const fileHandle = { kind: 'file', name: 'a.mp4' };
    const item = (get?: () => Promise<unknown>) => ({ kind: 'file', getAsFileSystemHandle: get }) as unknown as DataTransferItem;
    assert.equal(await handleOfDroppedItem(undefined), null);
    assert.equal(await handleOfDroppedItem(item(undefined)), null, 'no API');
    assert.equal(await handleOfDroppedItem(item(async () => fileHandle)), fileHandle);
    assert.equal(await handleOfDroppedItem(item(async () => ({ kind: 'directory', name: 'd' }))), null, 'a folder');
    assert.equal(await handleOfDroppedItem(item(async () => null)), null);
    assert.equal(await handleOfDroppedItem(item(async () => Promise.reject(new Error('x')))), null);
    assert.equal(
      await handleOfDroppedItem(
        item(() => {
          throw new Error('sync');
        }),
      ),
      null,
    );
  });
});
