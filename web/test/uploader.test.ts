/**
 * The upload scheduler against a fake server and a fake link (no network). The link shares its
 * rate between the PUTs on it (optionally with a per-connection cap, like a high-RTT path where one
 * TCP stream cannot fill the pipe) and reports real byte progress, as XHR upload.onprogress does.
 * What is pinned: part 0 goes alone, natural order does not split the link, a viewer's slot
 * pre-empts natural order and goes alone, pre-empted parts go again and every slot is reported once,
 * the rate estimate follows the link, a second stream is used only when measured to help; side
 * uploads (preview sprites) go as soon as made, beside part 0 while no viewer waits for it, and
 * never ahead of or beside a part a viewer waits for (part 0 included once a viewer asked for it);
 * while nobody watches, the priority feed waits on the answer's wake-up URL instead of holding its
 * poll (again on the same URL after one that ran out), gives wake-up URLs that do not work up, and
 * finished parts are reported in the `next` calls (batched) unless a viewer waits for them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '../src/lib/api.ts';
import type { Assignment, NextResponse, PresignedUpload, PriorityResponse, SlotReport, StatusResponse } from '../src/lib/api.ts';
import type { Analysis } from '../src/lib/analyze.ts';
import type { Plan } from '../src/lib/planner.ts';
import { Uploader } from '../src/lib/uploader.ts';
import type { SegmentSource, SideUpload, UploaderApi } from '../src/lib/uploader.ts';

type St = 'pending' | 'assigned' | 'uploaded' | 'published' | 'failed';

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Flow {
  slot: number;
  /** bytes not yet delivered */
  left: number;
  /** bytes delivered */
  loaded: number;
  /** bytes the sender has written (delivered + in the send buffer) */
  total: number;
  /** aborted: its buffered bytes still cross the link, nobody waits for them */
  ghost?: boolean;
  onProgress?: (loaded: number) => void;
  done: () => void;
  fail: (e: unknown) => void;
}

/**
 * A link of `rate` bytes/s shared fairly between flows, each at most `perStream` bytes/s. With a
 * `sendBuffer`, each flow's progress runs that many bytes ahead of delivery (an OS socket buffer and
 * a modem queue), and an aborted flow's buffered bytes still cross the link (as the kernel sends
 * them after the socket is closed).
 */
class FakeLink {
  readonly flows = new Set<Flow>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private last = performance.now();
  constructor(
    public rate: number,
    public perStream = Number.POSITIVE_INFINITY,
    public sendBuffer = 0,
  ) {}

  send(slot: number, bytes: number, signal: AbortSignal | undefined, onProgress?: (n: number) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const flow: Flow = {
        slot,
        left: bytes,
        loaded: 0,
        total: bytes,
        ...(onProgress ? { onProgress } : {}),
        done: () => setTimeout(resolve, 3), // the response comes back a moment after the last byte
        fail: reject,
      };
      signal?.addEventListener(
        'abort',
        () => {
          if (this.timer) this.tick();
          if (!this.flows.has(flow)) return;
          const buffered = Math.min(flow.left, this.sendBuffer);
          if (buffered > 0.5) {
            flow.ghost = true;
            flow.left = buffered;
          } else {
            this.flows.delete(flow);
          }
          reject(signal.reason);
        },
        { once: true },
      );
      // bring the flows already on the link up to now first: a new flow gets no bytes for time
      // before it existed, and an idle link lends no bytes to the next flow
      if (this.timer) this.tick();
      this.flows.add(flow);
      this.start();
    });
  }

  private start(): void {
    if (this.timer) return;
    this.last = performance.now();
    this.timer = setInterval(() => this.tick(), 10);
  }

  private tick(): void {
    const now = performance.now();
    const dt = (now - this.last) / 1000;
    this.last = now;
    if (this.flows.size === 0) return this.stop();
    const share = Math.min(this.perStream, this.rate / this.flows.size);
    for (const f of [...this.flows]) {
      const n = Math.min(f.left, share * dt);
      f.left -= n;
      f.loaded += n;
      if (!f.ghost) f.onProgress?.(Math.floor(Math.min(f.total, f.loaded + this.sendBuffer)));
      if (f.left <= 0.5) {
        this.flows.delete(f);
        if (!f.ghost) f.done();
      }
    }
    if (this.flows.size === 0) this.stop();
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

interface LogEntry {
  t: number;
  what: 'next' | 'put-start' | 'put-done' | 'put-aborted' | 'reported' | 'report-refused' | 'prioritize' | 'refused' | 'priority' | 'wake' | 'wake-done' | 'wake-aborted';
  slot?: number;
  /** a report's way: the single route or a `next` call's `uploaded` */
  via?: 'route' | 'next';
  /** a `next` call's reported slots */
  uploaded?: number[];
  /** a priority request's hold */
  waitMs?: number;
  slots?: number[];
  url?: string;
}

/** Windows first (nearest the playhead), then natural order; the feed leases like the real one. */
class FakeServer implements UploaderApi {
  readonly slots: St[];
  version = 0;
  windows: number[] = [];
  private waiters = new Set<() => void>();
  readonly log: LogEntry[] = [];
  readonly urlsBySlot = new Map<number, string[]>();
  private issued = 0;
  priorityMissing = false;
  /** slots whose first upload the worker refuses (failed; handed out again by next) */
  readonly refuseOnce = new Set<number>();
  /** slots whose first report finds no object (409 / an entry with `upload_missing`; the lease stays) */
  readonly missingOnce = new Set<number>();
  /** slots none of whose reports finds the object */
  readonly missingAlways = new Set<number>();
  /** while set, `next` calls wait for it (a call held up, as by 503 retries) */
  nextGate: Promise<void> | null = null;
  /** a watch page is open: the feed answers `watched` (and still offers wake-up URLs while no viewer waits) */
  watched = false;
  /** answers as a server before `watched` (a wake-up URL offered only while nobody watches) */
  legacyFeed = false;
  private wakeIssued = 0;
  /** feed answers offer a wake-up URL while no viewer window is open (as the server with feed queues) */
  wakeUrls = false;
  /** how a wake-up URL behaves: held until a prioritize (or wakeHoldMs), answered at once, or a network error */
  wakeMode: 'works' | 'instant' | 'rejects' = 'works';
  wakeHoldMs = 20_000;
  /** called as each wake-up starts (1, 2, …) */
  onWake?: (n: number) => void;
  private wakes = 0;

  constructor(
    n: number,
    readonly link: FakeLink,
    private readonly windowLen = 2,
  ) {
    this.slots = Array.from({ length: n }, () => 'pending' as St);
  }

  /** Holds up the `next` calls from now on; returns what lets them through. */
  holdNext(): () => void {
    let open = (): void => undefined;
    this.nextGate = new Promise<void>((resolve) => (open = resolve));
    return () => {
      this.nextGate = null;
      open();
    };
  }

  /** A watch page opens: it rings the feed queue (wake-ups end) and the feed answers watched. */
  watch(): void {
    this.watched = true;
    this.ring();
  }

  /** Ends the wake-ups and held polls waiting now (a message on the feed queue). */
  ring(): void {
    for (const w of this.waiters) w();
  }

  prioritize(slot: number): void {
    this.windows = [slot];
    this.version++;
    this.log.push({ t: performance.now(), what: 'prioritize', slot });
    for (const w of this.waiters) w();
  }

  prioritySlots(): number[] {
    const out: number[] = [];
    for (const p of this.windows) for (let s = p; s < Math.min(this.slots.length, p + this.windowLen); s++) if (this.slots[s] !== 'published') out.push(s);
    return out;
  }

  private lease(s: number, priority: boolean): Assignment {
    this.slots[s] = 'assigned';
    const url = `fake://${s}/${this.issued++}`;
    this.urlsBySlot.set(s, [...(this.urlsBySlot.get(s) ?? []), url]);
    const up: PresignedUpload = { track_id: 1, method: 'PUT', url, headers: {}, expires_at: new Date(Date.now() + 600_000).toISOString() };
    return { slot: s, priority, lease_expires_at: new Date(Date.now() + 120_000).toISOString(), uploads: [up] };
  }

  async next(_id: string, _secret: string, max: number, _signal?: AbortSignal, uploaded: readonly number[] = []): Promise<NextResponse> {
    await delay(2);
    if (this.nextGate) await this.nextGate;
    assert.ok(uploaded.length <= 16 && new Set(uploaded).size === uploaded.length, `a bad report list ${uploaded}`);
    // reports first: a reported slot is never leased back in the same answer
    const reports = uploaded.map((slot) => this.applyReport(slot, 'next'));
    const picks: Assignment[] = [];
    const take = (s: number, priority: boolean) => {
      if (picks.length >= max || (this.slots[s] !== 'pending' && this.slots[s] !== 'failed') || picks.some((p) => p.slot === s)) return;
      picks.push(this.lease(s, priority));
    };
    for (const s of this.prioritySlots()) take(s, true);
    for (let s = 0; s < this.slots.length; s++) take(s, false);
    this.log.push({ t: performance.now(), what: 'next', slots: picks.map((p) => p.slot), uploaded: [...uploaded] });
    return { assignments: picks, complete: this.complete, remaining: 0, priority_slots: this.prioritySlots(), ...(reports.length ? { reports } : {}) };
  }

  get complete(): boolean {
    return this.slots.every((s) => s === 'published');
  }

  async reportUploaded(_id: string, _secret: string, slot: number): Promise<{ slot: number; queue: string }> {
    await delay(2);
    const r = this.applyReport(slot, 'route');
    if (r.error) throw new ApiError(409, r.error, r.message ?? r.error);
    return { slot, queue: r.queue };
  }

  /** A report, either way: refused (the object is missing once), or the part is checked and published 5 ms later. */
  private applyReport(slot: number, via: 'route' | 'next'): SlotReport {
    const queue = this.windows.length ? 'priority' : 'normal';
    if (this.slots[slot] === 'published') return { slot, queue, enqueued: false, published: true, error: 'already_published', message: 'already published' };
    if (this.missingOnce.delete(slot) || this.missingAlways.has(slot)) {
      this.log.push({ t: performance.now(), what: 'report-refused', slot, via });
      return { slot, queue, enqueued: false, published: false, error: 'upload_missing', message: `slot ${slot}: no object` };
    }
    this.slots[slot] = 'uploaded';
    this.log.push({ t: performance.now(), what: 'reported', slot, via });
    setTimeout(() => {
      if (this.refuseOnce.delete(slot)) {
        this.slots[slot] = 'failed';
        this.log.push({ t: performance.now(), what: 'refused', slot });
        return;
      }
      this.slots[slot] = 'published';
      if (this.prioritySlots().length === 0 && this.windows.length) this.windows = [];
    }, 5);
    return { slot, queue, enqueued: true, published: false };
  }

  async status(): Promise<StatusResponse> {
    return {
      video_id: 'v',
      complete: this.complete,
      slot_count: this.slots.length,
      duration: this.slots.length,
      counts: { pending: 0, assigned: 0, uploaded: 0, published: 0, failed: 0 },
      slots: this.slots.map((state, i) => ({ start: i, duration: 1, state })),
      priority_slots: this.prioritySlots(),
    };
  }

  async put(upload: PresignedUpload, body: Blob | Uint8Array, signal?: AbortSignal, onProgress?: (loaded: number) => void): Promise<void> {
    const slot = Number(/^fake:\/\/(\d+)\//.exec(upload.url)![1]);
    this.log.push({ t: performance.now(), what: 'put-start', slot, url: upload.url });
    try {
      await this.link.send(slot, body instanceof Blob ? body.size : body.byteLength, signal, onProgress);
    } catch (e) {
      this.log.push({ t: performance.now(), what: 'put-aborted', slot, url: upload.url });
      throw e;
    }
    this.log.push({ t: performance.now(), what: 'put-done', slot, url: upload.url });
  }

  private answer(lease: number): PriorityResponse {
    const assignments: Assignment[] = [];
    for (const s of this.prioritySlots()) if (assignments.length < lease && this.slots[s] === 'pending') assignments.push(this.lease(s, true));
    return this.withWake({ version: this.version, priority_slots: this.prioritySlots(), complete: this.complete, assignments });
  }

  private withWake(r: PriorityResponse): PriorityResponse {
    const watched = this.watched || this.windows.length > 0;
    const out = this.legacyFeed ? r : { ...r, watched };
    // a fresh URL with every answer, as the server presigns one each time
    const offer = this.wakeUrls && !r.complete && this.windows.length === 0 && !(this.legacyFeed && watched);
    return offer ? { ...out, wake_url: `fake-wake://${this.version}/${this.wakeIssued++}` } : out;
  }

  async wake(url: string, signal?: AbortSignal): Promise<void> {
    this.log.push({ t: performance.now(), what: 'wake', url });
    this.onWake?.(++this.wakes);
    signal?.throwIfAborted();
    if (this.wakeMode === 'rejects') {
      await delay(1);
      throw new TypeError('Failed to fetch');
    }
    if (this.wakeMode === 'works') {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(t);
          this.waiters.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        const t = setTimeout(done, this.wakeHoldMs);
        this.waiters.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    } else await delay(1);
    if (signal?.aborted) {
      this.log.push({ t: performance.now(), what: 'wake-aborted' });
      throw signal.reason;
    }
    this.log.push({ t: performance.now(), what: 'wake-done' });
  }

  async priority(_id: string, _secret: string, after: number | null, waitMs: number, signal?: AbortSignal, lease = 0): Promise<PriorityResponse> {
    if (this.priorityMissing) throw new ApiError(404, 'not_found', 'no route');
    this.log.push({ t: performance.now(), what: 'priority', waitMs });
    if (after === null || after !== this.version) return this.answer(lease);
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        this.waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, waitMs);
      this.waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
    signal?.throwIfAborted();
    return after !== this.version ? this.answer(lease) : this.withWake({ version: this.version, priority_slots: this.prioritySlots(), complete: this.complete, assignments: [] });
  }

  /** the feed's requests and wake-ups in order: 'W' a wake-up, else a priority request's hold in ms */
  feedCalls(since = 0): (number | 'W')[] {
    return this.log.filter((l) => l.t >= since && (l.what === 'priority' || l.what === 'wake')).map((l) => (l.what === 'wake' ? 'W' : l.waitMs!));
  }

  /** [start, end) of every completed or aborted PUT, by slot */
  intervals(): { slot: number; start: number; end: number; aborted: boolean }[] {
    const open = new Map<string, number>();
    const out: { slot: number; start: number; end: number; aborted: boolean }[] = [];
    for (const l of this.log) {
      if (l.what === 'put-start') open.set(l.url!, l.t);
      if (l.what === 'put-done' || l.what === 'put-aborted') out.push({ slot: l.slot!, start: open.get(l.url!)!, end: l.t, aborted: l.what === 'put-aborted' });
    }
    return out;
  }
}

function fakeMedia(n: number, bytes: number): { analysis: Analysis; plan: Plan; segmenter: SegmentSource } {
  const analysis = { tracks: [{ id: 1, initSegment: new Uint8Array(10) }] } as unknown as Analysis;
  const plan = { slots: Array.from({ length: n }, () => ({ bytes, tracks: [{ size: bytes }] })), totalBytes: n * bytes } as unknown as Plan;
  const segmenter: SegmentSource = { buildSlot: async (_slot, tracks) => tracks.map(() => new Blob([new Uint8Array(bytes)])) };
  return { analysis, plan, segmenter };
}

/** side uploads (preview sprites) of `bytes` each, PUT to fake://900+i/… */
function sprites(n: number, bytes: number): SideUpload[] {
  return Array.from({ length: n }, (_, i) => ({
    label: `sprite ${i}`,
    upload: { track_id: 0, method: 'PUT', url: `fake://${900 + i}/sprite`, headers: {}, expires_at: new Date(Date.now() + 600_000).toISOString() },
    body: new Blob([new Uint8Array(bytes)]),
  }));
}

type Trace = { t: number; ev: string; data: Record<string, unknown> }[];

function setup(n: number, bytes: number, link: FakeLink, opts: Partial<ConstructorParameters<typeof Uploader>[6]> = {}) {
  const server = new FakeServer(n, link);
  const { analysis, plan, segmenter } = fakeMedia(n, bytes);
  const trace: Trace = [];
  const logs: string[] = [];
  const uploader = new Uploader(server, 'v', 's', analysis, plan, segmenter, { parallel: 4, statusIntervalMs: 200, ...opts }, {
    onTrace: (ev, data) => trace.push({ t: performance.now(), ev, data }),
    onLog: (m) => logs.push(m),
  });
  return { server, uploader, trace, logs };
}

/**
 * A viewer hopping ahead faster than the upload can follow, for 3 s: one prioritize every 150 ms,
 * from slot `from` on (`onHop` after each). Returns when it started and stopped.
 */
async function hopAhead(server: FakeServer, from: number, n: number, onHop?: () => void): Promise<{ t0: number; t1: number }> {
  const t0 = performance.now();
  for (let far = from; performance.now() - t0 < 3000 && far < n - 2; far++) {
    server.prioritize(far);
    onHop?.();
    await delay(150);
  }
  return { t0, t1: performance.now() };
}

/** total time two PUTs of different slots were on the link together */
function overlapMs(a: { start: number; end: number }, b: { start: number; end: number }): number {
  return Math.max(0, Math.min(a.end, b.end) - Math.max(a.start, b.start));
}

describe('upload scheduler', () => {
  it('part 0 completes before any other part starts, and natural order does not split the link', { timeout: 30_000 }, async () => {
    const { server, uploader } = setup(12, 100_000, new FakeLink(400_000), { parallel: 1 }); // 250 ms per part; one stream at most (probing is pinned below)
    assert.equal(await uploader.run(), 'complete');
    const iv = server.intervals();
    const p0 = iv.find((i) => i.slot === 0)!;
    for (const i of iv.filter((x) => x.slot !== 0)) assert.ok(i.start >= p0.end, `slot ${i.slot} started ${(p0.end - i.start).toFixed(1)} ms before part 0 completed`);
    // a single stream fills this link: consecutive parts overlap at most by their tails
    let shared = 0;
    for (let i = 0; i < iv.length; i++) for (let j = i + 1; j < iv.length; j++) shared += overlapMs(iv[i]!, iv[j]!);
    const total = iv.reduce((n, i) => n + (i.end - i.start), 0);
    assert.ok(shared < 0.25 * total, `PUTs shared the link ${shared.toFixed(0)} of ${total.toFixed(0)} ms`);
    for (let s = 0; s < 12; s++) assert.equal(server.log.filter((l) => l.what === 'reported' && l.slot === s).length, 1, `slot ${s} reported once`);
  });

  it('a pause asked for before run() starts is kept: run() ends paused with nothing sent, and the next run() uploads everything', { timeout: 30_000 }, async () => {
    const { server, uploader } = setup(6, 50_000, new FakeLink(1_000_000), { parallel: 1 });
    uploader.pause();
    assert.equal(await uploader.run(), 'paused');
    assert.equal(server.log.filter((l) => l.what === 'put-start').length, 0, 'no PUT after an early pause');
    assert.equal(await uploader.run(), 'complete');
    for (let s = 0; s < 6; s++) assert.equal(server.log.filter((l) => l.what === 'reported' && l.slot === s).length, 1, `slot ${s} reported once`);
  });

  it('a viewer’s slot pre-empts natural order, goes alone, and the aborted part is sent again (every slot reported once)', { timeout: 30_000 }, async () => {
    const n = 16;
    const { server, uploader, trace } = setup(n, 1_000_000, new FakeLink(2_000_000)); // 500 ms per part
    const run = uploader.run();
    while (server.log.filter((l) => l.what === 'reported').length < 3) await delay(5);
    // wait until a natural part is early in its PUT (far from done), then a viewer seeks far ahead
    for (let i = 0; i < 500; i++) {
      const f = [...server.link.flows][0];
      if (f && f.loaded > 20_000 && f.loaded < 200_000) break;
      await delay(1);
    }
    const inFlight = [...server.link.flows].map((f) => f.slot);
    assert.ok(inFlight.length >= 1, 'a natural-order part was on the link');
    const t0 = performance.now();
    server.prioritize(12);
    const [p12] = await (async () => {
      for (;;) {
        const d = server.intervals().filter((i) => i.slot === 12 && !i.aborted);
        if (d.length) return d;
        await delay(5);
      }
    })();
    const ms = p12!.end - t0;
    if (process.env.DEBUG_UPLOADER) console.log(JSON.stringify([...server.log.filter((l) => l.t > t0 - 50).map((l) => ({ ...l, t: Math.round(l.t - t0) })), ...trace.filter((e) => e.t > t0 - 50).map((e) => ({ t: Math.round(e.t - t0), ev: e.ev, ...e.data }))].sort((a, b) => a.t - b.t)));
    assert.ok(ms < 700, `slot 12 done ${ms.toFixed(0)} ms after the seek (500 ms of link time)`);
    const aborted = server.intervals().filter((i) => i.aborted);
    assert.ok(
      aborted.some((a) => inFlight.includes(a.slot)),
      `the natural part in flight (${inFlight}) was aborted: ${JSON.stringify(aborted.map((a) => a.slot))}`,
    );
    // no natural-order PUT shares the link with slot 25 beyond a short tail
    for (const i of server.intervals().filter((x) => x.slot !== 12 && x.slot !== 13)) {
      assert.ok(overlapMs(i, p12!) < 30, `slot ${i.slot} shared the link with slot 12 for ${overlapMs(i, p12!).toFixed(0)} ms`);
    }
    assert.ok(
      trace.some((e) => e.ev === 'lease' && (e.data.slots as number[]).includes(12)),
      'the lease for slot 12 came with the priority answer (no POST next)',
    );
    assert.equal(await run, 'complete');
    for (let s = 0; s < n; s++) {
      assert.equal(server.log.filter((l) => l.what === 'reported' && l.slot === s).length, 1, `slot ${s} reported once`);
      assert.equal(server.urlsBySlot.get(s)!.length, 1, `slot ${s} leased once (aborted parts keep their lease)`);
    }
  });

  it('on a link whose send buffer hides bytes from upload progress, natural order still does not split the link', { timeout: 30_000 }, async () => {
    // progress runs 150 KB (375 ms of link time) ahead of delivery, as with an OS socket buffer + modem queue
    const { server, uploader } = setup(10, 200_000, new FakeLink(400_000, Number.POSITIVE_INFINITY, 150_000), { parallel: 1 });
    assert.equal(await uploader.run(), 'complete');
    const iv = server.intervals();
    let shared = 0;
    for (let i = 0; i < iv.length; i++) for (let j = i + 1; j < iv.length; j++) shared += overlapMs(iv[i]!, iv[j]!);
    const total = iv.reduce((n, i) => n + (i.end - i.start), 0);
    // starting the next PUT when progress says "nearly done" would overlap every pair by ~375 ms (75 %)
    assert.ok(shared < 0.15 * total, `PUTs shared the link ${shared.toFixed(0)} of ${total.toFixed(0)} ms`);
    const span = Math.max(...iv.map((i) => i.end)) - Math.min(...iv.map((i) => i.start));
    assert.ok(span < 1.25 * 10 * 500, `the link stayed busy: 10 parts of 500 ms took ${span.toFixed(0)} ms`);
  });

  it('a natural part with nothing left to write is not aborted for a viewer: the viewer’s part starts beside it at once', { timeout: 30_000 }, async () => {
    const n = 12;
    const link = new FakeLink(1_000_000, Number.POSITIVE_INFINITY, 300_000);
    const { server, uploader } = setup(n, 1_000_000, link); // 1 s per part, 0.3 s of it hidden in the buffer
    const run = uploader.run();
    while (server.log.filter((l) => l.what === 'reported').length < 2) await delay(5);
    // wait until the natural part has written everything but still has ~200 ms of bytes to deliver
    let natural: number | null = null;
    for (let i = 0; i < 3000 && natural === null; i++) {
      const f = [...link.flows].find((x) => !x.ghost && x.loaded > 750_000 && x.loaded < 800_000);
      if (f) natural = f.slot;
      else await delay(1);
    }
    assert.ok(natural !== null, 'a natural part reached its buffered end');
    const t0 = performance.now();
    server.prioritize(9);
    while (!server.log.some((l) => l.what === 'put-start' && l.slot === 9)) await delay(2);
    const started = server.log.find((l) => l.what === 'put-start' && l.slot === 9)!.t - t0;
    const naturalDone = server.intervals().find((i) => i.slot === natural && !i.aborted);
    assert.ok(started < 120, `the viewer’s part started ${started.toFixed(0)} ms after the seek`);
    assert.ok(!naturalDone || naturalDone.end > t0 + started, 'it started before the buffered part was through (did not wait for it)');
    assert.equal(await run, 'complete');
    assert.ok(!server.intervals().some((i) => i.slot === natural && i.aborted), `slot ${natural} (all written) was not aborted`);
    for (let s = 0; s < n; s++) assert.equal(server.log.filter((l) => l.what === 'reported' && l.slot === s).length, 1, `slot ${s} reported once`);
  });

  it('side uploads (preview sprites) go ahead of natural-order parts, and not beside a part a viewer waits for', { timeout: 30_000 }, async () => {
    const sides = (n: number): SideUpload[] =>
      Array.from({ length: n }, (_, i) => ({
        label: `sprite ${i}`,
        upload: { track_id: 0, method: 'PUT', url: `fake://${900 + i}/sprite`, headers: {}, expires_at: new Date(Date.now() + 600_000).toISOString() },
        body: new Blob([new Uint8Array(20_000)]),
      }));
    let ready = 0;
    const { server, uploader, trace } = setup(12, 100_000, new FakeLink(400_000), {
      parallel: 1,
      sideUploads: async () => {
        await delay(400);
        ready = performance.now();
        return sides(3);
      },
    });
    assert.equal(await uploader.run(), 'complete');
    const iv = server.intervals();
    const sideIv = iv.filter((i) => i.slot >= 900);
    assert.equal(sideIv.length, 3, 'every side upload went up');
    const sidesDone = Math.max(...sideIv.map((i) => i.end));
    const naturalBetween = iv.filter((i) => i.slot < 900 && i.start > ready && i.start < sidesDone);
    assert.deepEqual(naturalBetween.map((i) => i.slot), [], 'no natural part started between the sides being ready and sent');
    assert.ok(trace.some((e) => e.ev === 'side-done'), 'side uploads are traced');

    // a viewer waits for slot 8 when the sides become ready: they wait for it
    const second = setup(12, 100_000, new FakeLink(400_000), {
      parallel: 1,
      sideUploads: async () => {
        while (!second.server.log.some((l) => l.what === 'put-start' && l.slot === 8)) await delay(2);
        return sides(2);
      },
    });
    const run = second.uploader.run();
    while (second.server.log.filter((l) => l.what === 'reported').length < 2) await delay(5);
    second.server.prioritize(8);
    assert.equal(await run, 'complete');
    const p8 = second.server.intervals().find((i) => i.slot === 8 && !i.aborted)!;
    for (const sIv of second.server.intervals().filter((i) => i.slot >= 900)) assert.ok(overlapMs(sIv, p8) === 0, `a side upload shared the link with the viewer’s part for ${overlapMs(sIv, p8).toFixed(0)} ms`);
  });

  it('with no viewer, the side uploads go as soon as they are made, beside part 0, and are all through before part 0 is', { timeout: 30_000 }, async () => {
    let ready = 0;
    const { server, uploader, trace } = setup(2, 1_000_000, new FakeLink(400_000), {
      parallel: 1,
      sideUploads: async () => {
        await delay(200);
        ready = performance.now();
        return sprites(3, 20_000);
      },
    }); // part 0 alone: 2.5 s
    assert.equal(await uploader.run(), 'complete');
    const iv = server.intervals();
    const p0 = iv.find((i) => i.slot === 0 && !i.aborted)!;
    const sideIv = iv.filter((i) => i.slot >= 900);
    assert.equal(sideIv.length, 3, 'every side upload went up once');
    for (const sIv of sideIv) assert.ok(sIv.end < p0.end, `side ${sIv.slot} done ${(sIv.end - p0.end).toFixed(0)} ms after part 0`);
    assert.ok(sideIv[0]!.start - ready < 50, `the first side upload started ${(sideIv[0]!.start - ready).toFixed(0)} ms after it was made`);
    assert.ok(
      trace.filter((e) => e.ev === 'side-start').every((e) => (e.data.beside as number[]).includes(0)),
      'they went beside part 0',
    );
    // part 0 still keeps the link to itself against the other parts
    for (const i of iv.filter((x) => x.slot !== 0 && x.slot < 900)) assert.ok(i.start >= p0.end, `slot ${i.slot} started before part 0 completed`);
  });

  it('a priority for part 0 known when the side uploads are made: none starts before part 0 is done', { timeout: 30_000 }, async () => {
    const { server, uploader, trace } = setup(4, 400_000, new FakeLink(400_000), {
      parallel: 1,
      sideUploads: async () => {
        await delay(100);
        return sprites(3, 20_000);
      },
    }); // 1 s per part
    server.prioritize(0); // a viewer opened the link before the upload started
    assert.equal(await uploader.run(), 'complete');
    const iv = server.intervals();
    const p0 = iv.find((i) => i.slot === 0 && !i.aborted)!;
    const sideIv = iv.filter((i) => i.slot >= 900);
    assert.equal(sideIv.length, 3, 'every side upload went up');
    assert.ok(trace.some((e) => e.ev === 'side-ready' && e.t < p0.start + 500), 'the side uploads were ready while part 0 was on the link');
    for (const sIv of sideIv) assert.ok(sIv.start >= p0.end, `side ${sIv.slot} started ${(p0.end - sIv.start).toFixed(0)} ms before part 0 was done`);
    // and not before the rest of the viewer's window (slot 1) either
    const p1 = iv.find((i) => i.slot === 1 && !i.aborted)!;
    for (const sIv of sideIv) assert.ok(overlapMs(sIv, p1) === 0, `side ${sIv.slot} shared the link with the viewer's slot 1`);
  });

  it('a priority arriving while side uploads are pending holds the rest back until the viewer’s part is done', { timeout: 30_000 }, async () => {
    const { server, uploader, trace } = setup(3, 1_000_000, new FakeLink(400_000), {
      parallel: 1,
      sideUploads: async () => {
        await delay(100);
        return sprites(3, 30_000);
      },
    }); // part 0: 2.5 s
    const run = uploader.run();
    // the first side upload goes beside part 0 (no viewer yet); a viewer opens the link meanwhile
    while (!trace.some((e) => e.ev === 'side-start')) await delay(1);
    server.prioritize(0);
    assert.equal(await run, 'complete');
    const tPrio = trace.find((e) => e.ev === 'priority' && (e.data.slots as number[]).includes(0))!.t;
    const iv = server.intervals();
    const p0 = iv.find((i) => i.slot === 0 && !i.aborted)!;
    assert.ok(tPrio < p0.end - 1000, 'the priority reached the uploader early in part 0');
    const sideIv = iv.filter((i) => i.slot >= 900);
    assert.equal(sideIv.filter((i) => !i.aborted).length, 3, 'every side upload went up');
    const during = sideIv.filter((i) => i.start > tPrio && i.start < p0.end);
    assert.deepEqual(during.map((i) => i.slot), [], 'no side upload started while the viewer waited for part 0');
    assert.ok(sideIv.filter((i) => i.start >= p0.end).length >= 2, `the pending side uploads went after part 0: ${JSON.stringify(sideIv.map((i) => [i.slot, Math.round(i.start - p0.end)]))}`);
    assert.ok(!trace.some((e) => e.ev === 'side-abort'), 'a side upload with nothing left to write is not aborted');
  });

  it('a large side upload beside part 0 gives the link up when a viewer asks for part 0, and goes again after it', { timeout: 30_000 }, async () => {
    const { server, uploader, trace } = setup(2, 1_000_000, new FakeLink(400_000), {
      parallel: 1,
      sideUploads: async () => {
        await delay(100);
        return sprites(1, 300_000);
      },
    });
    const run = uploader.run();
    while (!server.log.some((l) => l.what === 'put-start' && l.slot === 900)) await delay(1);
    await delay(30);
    server.prioritize(0);
    assert.equal(await run, 'complete');
    const iv = server.intervals();
    const p0 = iv.find((i) => i.slot === 0 && !i.aborted)!;
    const side = iv.filter((i) => i.slot === 900);
    assert.ok(trace.some((e) => e.ev === 'side-abort'), 'the side upload yielded');
    assert.deepEqual(
      side.map((i) => i.aborted),
      [true, false],
      'aborted once, then sent again',
    );
    assert.ok(side[1]!.start >= p0.end, 'sent again after part 0');
    assert.ok(side[0]!.end < p0.end - 1000, 'it left the link early in part 0');
  });

  it('the rate estimate follows a change of the link’s rate mid-upload', { timeout: 30_000 }, async () => {
    const link = new FakeLink(1_000_000);
    const { server, uploader, trace } = setup(100, 50_000, link); // 50 ms per part, then 250 ms: parts outlast the test
    const run = uploader.run();
    await delay(1500);
    const before = uploader.measuredRate!;
    link.rate = 200_000;
    await delay(4000); // more than one estimate window (3 s of link time) at the new rate
    const after = uploader.measuredRate!;
    console.log(`estimate ${(before / 1e3).toFixed(0)} kB/s → ${(after / 1e3).toFixed(0)} kB/s (link 1000 → 200 kB/s)`);
    assert.ok(before > 700_000 && before < 1_300_000, `estimate at 1 MB/s: ${before}`);
    assert.ok(after > 160_000 && after < 240_000, `estimate at 200 kB/s: ${after}`);
    assert.ok(trace.some((e) => e.ev === 'rate'), 'the estimate is traced');
    uploader.stop();
    await run.catch(() => undefined);
    assert.ok(server.log.length > 0);
  });

  it('uses a second stream only when measured to help: not on a link one stream fills, yes when each stream is capped', { timeout: 60_000 }, async () => {
    const filled = setup(80, 50_000, new FakeLink(800_000)); // 62 ms per part
    assert.equal(await filled.uploader.run(), 'complete');
    const probesFilled = filled.trace.filter((e) => e.ev === 'probe');
    assert.ok(probesFilled.length >= 1, 'it measured');
    assert.ok(probesFilled.every((p) => p.data.kept === false), `kept a stream that did not help: ${JSON.stringify(probesFilled)}`);
    const decided = filled.trace.filter((e) => e.ev === 'streams' && !e.data.probe);
    assert.ok(decided.every((e) => e.data.n === 1), `settled on more streams: ${JSON.stringify(decided)}`);

    const capped = setup(60, 50_000, new FakeLink(800_000, 300_000)); // one stream gets 300 of 800 kB/s
    assert.equal(await capped.uploader.run(), 'complete');
    const kept = capped.trace.filter((e) => e.ev === 'probe' && e.data.kept === true);
    assert.ok(kept.length >= 1, `no probe kept: ${JSON.stringify(capped.trace.filter((e) => e.ev === 'probe'))}`);
    assert.ok(capped.uploader.progress().streams >= 2, `streams ${capped.uploader.progress().streams}`);
  });

  it('viewers keeping the link busy do not starve natural order (one slot every naturalEveryMs)', { timeout: 30_000 }, async () => {
    const n = 100;
    const { server, uploader } = setup(n, 20_000, new FakeLink(200_000), { naturalEveryMs: 500 }); // 100 ms per part
    const run = uploader.run();
    while (server.log.filter((l) => l.what === 'reported').length < 2) await delay(5);
    // a viewer hopping ahead faster than the upload can follow: priority work never runs out
    const { t0, t1 } = await hopAhead(server, 40, n);
    const naturalDuring = server.log.filter((l) => l.what === 'reported' && l.slot! < 40 && l.t > t0 + 300 && l.t < t1).length;
    const priorityDuring = server.log.filter((l) => l.what === 'reported' && l.slot! >= 40 && l.t > t0 && l.t < t1).length;
    console.log(`in ${((t1 - t0) / 1000).toFixed(1)} s of continuous priority work: ${priorityDuring} priority slots, ${naturalDuring} natural-order slots`);
    assert.ok(priorityDuring >= 10, `${priorityDuring} priority slots`);
    assert.ok(naturalDuring >= 2, `natural order got ${naturalDuring} slots`);
    assert.equal(await run, 'complete');
  });

  it('viewers keeping the link busy do not starve the side uploads either (one every naturalEveryMs)', { timeout: 30_000 }, async () => {
    const n = 100;
    let pressure = false;
    const { server, uploader, trace } = setup(n, 20_000, new FakeLink(200_000), {
      naturalEveryMs: 500,
      sideUploads: async () => {
        while (!pressure) await delay(5); // the previews are made once the viewer is already waiting
        return sprites(4, 5_000);
      },
    }); // 100 ms per part
    const run = uploader.run();
    while (server.log.filter((l) => l.what === 'reported').length < 2) await delay(5);
    // a viewer asks for part after part before the previews could go: priority work never runs out
    const { t0, t1 } = await hopAhead(server, 40, n, () => (pressure = true));
    const sidesDuring = server.intervals().filter((i) => i.slot >= 900 && !i.aborted && i.start > t0 + 300 && i.end < t1).length;
    assert.ok(sidesDuring >= 2, `side uploads done during ${((t1 - t0) / 1000).toFixed(1)} s of continuous priority work: ${sidesDuring}`);
    assert.ok(trace.some((e) => e.ev === 'side-start' && e.data['guard'] === true), 'the guard started them');
    assert.equal(await run, 'complete');
  });

  it('without a priority feed (older server) it follows the status poll', { timeout: 30_000 }, async () => {
    const { server, uploader } = setup(24, 20_000, new FakeLink(400_000), { statusIntervalMs: 100 });
    server.priorityMissing = true;
    const run = uploader.run();
    while (server.log.filter((l) => l.what === 'reported').length < 2) await delay(5);
    server.prioritize(18);
    const t = performance.now();
    assert.equal(await run, 'complete');
    const rep = server.log.find((l) => l.what === 'reported' && l.slot === 18)!;
    assert.ok(rep.t - t < 500, `slot 18 reported ${rep.t - t} ms after the prioritize`);
    const order = server.log.filter((l) => l.what === 'reported').map((l) => l.slot);
    assert.ok(order.indexOf(18) < 10, `slot 18 came out of natural order: ${order}`);
  });

  it('a part the worker refused is sent again when the server hands it out, even before the status poll shows it failed', { timeout: 30_000 }, async () => {
    // the status poll is too slow to tell: only the new lease says the server wants the part again
    const { server, uploader } = setup(8, 50_000, new FakeLink(1_000_000), { statusIntervalMs: 60_000 });
    server.refuseOnce.add(1);
    const running = uploader.run().catch(() => 'stopped' as const);
    const run = await Promise.race([running, delay(10_000).then(() => 'stuck' as const)]);
    if (run === 'stuck') {
      uploader.stop();
      await running;
    }
    assert.equal(run, 'complete', `upload did not complete; server slots ${server.slots.join(',')}`);
    assert.ok(server.log.some((l) => l.what === 'refused' && l.slot === 1), 'the fake refused slot 1');
    assert.equal(server.log.filter((l) => l.what === 'put-done' && l.slot === 1).length, 2, 'slot 1 was sent twice');
    assert.equal(server.log.filter((l) => l.what === 'reported' && l.slot === 1).length, 2, 'slot 1 was reported twice');
  });
});

describe('status at the end', () => {
  it('a fresh status refresh (the one run() makes as it ends) waits for a poll in flight and asks again, so the page shows the newer answer last', { timeout: 30_000 }, async () => {
    /** answers each status poll 300 ms late, with the slots as they were when it was asked */
    class StaleStatusServer extends FakeServer {
      override async status(): Promise<StatusResponse> {
        const asked = await super.status();
        await delay(300);
        return asked;
      }
    }
    const server = new StaleStatusServer(6, new FakeLink(2_000_000));
    const { analysis, plan, segmenter } = fakeMedia(6, 20_000);
    const shown: number[] = [];
    const uploader = new Uploader(server, 'v', 's', analysis, plan, segmenter, { parallel: 1 }, {
      onStatus: (s) => shown.push(s.slots.filter((x) => x.state === 'published').length),
    });
    const inFlight = uploader.refreshStatus(); // asked while nothing is published
    await delay(50);
    server.slots.fill('published'); // the upload ends meanwhile
    assert.equal(await uploader.refreshStatus(), null, 'a plain refresh leaves it to the poll in flight');
    const fresh = await uploader.refreshStatus(true);
    assert.equal(fresh?.slots.filter((x) => x.state === 'published').length, 6);
    await inFlight;
    assert.deepEqual(shown, [0, 6], 'the stale answer first, the fresh one last');
    assert.equal(uploader.progress().slotsPublished, 6);
  });
});

describe('priority feed wake-ups', () => {
  const HOLD = 7000;

  it('without a wake-up URL in the answers the feed holds its poll for the configured time', { timeout: 30_000 }, async () => {
    const { server, uploader } = setup(8, 50_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD });
    assert.equal(await uploader.run(), 'complete');
    const calls = server.feedCalls();
    assert.ok(calls.length >= 2, `feed calls ${JSON.stringify(calls)}`);
    assert.deepEqual(calls, calls.map(() => HOLD), 'every request held the configured time, no wake-up');
  });

  it('while nobody watches it waits on the wake-up URL, then asks with wait_ms=0; a seek wakes it at once, and watched it holds the poll', { timeout: 30_000 }, async () => {
    const n = 24;
    const { server, uploader, trace } = setup(n, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD }); // 250 ms per part
    server.wakeUrls = true;
    server.wakeHoldMs = 1100; // SQS holds 20 s: a wake-up that ran its course (longer than a stray's second)
    const run = uploader.run();
    while (server.log.filter((l) => l.what === 'wake-done').length < 2) await delay(5);
    // every request after the first follows one wake-up, and holds nothing
    const before = server.feedCalls();
    assert.equal(before[0], HOLD, 'the first request (no version yet: answered at once)');
    for (let i = 1; i < before.length; i += 2) {
      assert.equal(before[i], 'W', `call ${i} of ${JSON.stringify(before)}`);
      if (i + 1 < before.length) assert.equal(before[i + 1], 0, `call ${i + 1} of ${JSON.stringify(before)}`);
    }
    // a viewer seeks while the uploader waits on the wake-up URL
    while (server.feedCalls().at(-1) !== 'W') await delay(2);
    const t0 = performance.now();
    server.prioritize(20);
    while (!server.intervals().some((i) => i.slot === 20 && !i.aborted)) await delay(5);
    const p20 = server.intervals().find((i) => i.slot === 20 && !i.aborted)!;
    const woken = server.log.find((l) => l.what === 'wake-done' && l.t >= t0)!;
    assert.ok(woken.t - t0 < 50, `the wake-up came back ${(woken.t - t0).toFixed(0)} ms after the seek`);
    assert.ok(p20.end - t0 < 900, `slot 20 done ${(p20.end - t0).toFixed(0)} ms after the seek (250 ms of link time)`);
    // the answer after the wake-up (no hold) names the viewer's window; then, watched, the poll is held
    assert.deepEqual(server.feedCalls(t0).slice(0, 2), [0, HOLD], JSON.stringify(server.feedCalls(t0)));
    assert.equal(await run, 'complete');
    const wakes = trace.filter((e) => e.ev === 'wake');
    assert.ok(wakes.length >= 3, `wake-ups traced: ${wakes.length}`);
    assert.ok(wakes.every((e) => e.data.stray === false), `no stray wake-up: ${JSON.stringify(wakes.map((e) => e.data))}`);
    assert.ok(!trace.some((e) => e.ev === 'wake-off'));
    for (let s = 0; s < n; s++) assert.equal(server.log.filter((l) => l.what === 'reported' && l.slot === s).length, 1, `slot ${s} reported once`);
  });

  for (const mode of ['instant', 'rejects'] as const) {
    it(`wake-up URLs that ${mode === 'instant' ? 'come back at once with nothing new' : 'fail to fetch'} are given up after 3 in a row: the poll is held again, logged once`, { timeout: 30_000 }, async () => {
      const { server, uploader, trace, logs } = setup(12, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD }); // 3 s
      server.wakeUrls = true;
      server.wakeMode = mode;
      // the second wake-up brings a new version: a quick wake-up it was right to come back for, so the
      // count starts again; a fetch that failed is stray whatever the feed says next
      server.onWake = (i) => {
        if (i === 2) server.version++;
      };
      assert.equal(await uploader.run(), 'complete');
      const calls = server.feedCalls();
      const verdicts = mode === 'instant' ? [true, false, true, true, true] : [true, true, true];
      // the first request; one request with no hold per wake-up; then held polls only
      const head = [HOLD, ...verdicts.flatMap(() => ['W', 0])];
      assert.deepEqual(calls.slice(0, head.length), head, JSON.stringify(calls));
      assert.ok(calls.length > head.length, `a held request after the wake-ups: ${JSON.stringify(calls)}`);
      assert.deepEqual(calls.slice(head.length), calls.slice(head.length).map(() => HOLD), `held polls after giving up: ${JSON.stringify(calls)}`);
      assert.deepEqual(
        trace.filter((e) => e.ev === 'wake').map((e) => e.data.stray),
        verdicts,
      );
      assert.equal(trace.filter((e) => e.ev === 'wake-off').length, 1);
      assert.equal(logs.filter((m) => m.includes('wake-up URL does not work')).length, 1, logs.join('\n'));
    });
  }

  it('a wake-up rung by a watch page opening is not stray: the answer turned watched (same version, still a wake-up URL)', { timeout: 30_000 }, async () => {
    const { server, uploader, trace } = setup(12, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD });
    server.wakeUrls = true;
    server.wakeHoldMs = 60_000; // SQS would hold it 20 s: only the page's ring ends it
    const version = server.version;
    const run = uploader.run();
    while (!server.log.some((l) => l.what === 'wake')) await delay(5);
    server.watch();
    while (!trace.some((e) => e.ev === 'wake')) await delay(5);
    const wake = trace.find((e) => e.ev === 'wake')!;
    assert.equal(server.version, version, 'a page opening is no new version');
    assert.equal(wake.data.stray, false, JSON.stringify(wake.data));
    assert.equal(await run, 'complete');
  });

  it('a wake-up that runs out is followed by another wait on the same URL without a feed request; the 3rd run-out in a row asks the feed', { timeout: 30_000 }, async () => {
    const { server, uploader, trace } = setup(16, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD, wakeRunOutMs: 250 }); // 4 s
    server.wakeUrls = true;
    server.wakeHoldMs = 300; // every wake-up runs out (250 ms stands for SQS's 20 s)…
    // …but the 2nd, rung after 100 ms (a new version): the feed is asked at once, and the count starts again
    server.onWake = (i) => {
      if (i === 2)
        setTimeout(() => {
          server.version++;
          server.ring();
        }, 100);
    };
    const run = uploader.run();
    while (server.log.filter((l) => l.what === 'wake').length < 6) await delay(5);
    const calls = server.feedCalls().slice(0, 8);
    assert.deepEqual(calls, [HOLD, 'W', 'W', 0, 'W', 'W', 'W', 0], JSON.stringify(server.feedCalls()));
    const urls = server.log.filter((l) => l.what === 'wake').map((l) => l.url);
    assert.equal(urls[1], urls[0], 'the wait after a run-out is on the same URL');
    assert.ok(urls[2] !== urls[1] && urls[3] === urls[2] && urls[4] === urls[2], `a new URL only after a feed answer: ${urls.join(' ')}`);
    assert.notEqual(urls[5], urls[4], 'the 3rd run-out asked the feed: a fresh URL');
    const wakes = trace.filter((e) => e.ev === 'wake').slice(0, 5);
    assert.deepEqual(
      wakes.map((e) => [e.data.ranOut ?? false, e.data.asked ?? null]),
      [
        [true, false],
        [false, null],
        [true, false],
        [true, false],
        [true, true],
      ],
      JSON.stringify(wakes.map((e) => e.data)),
    );
    assert.deepEqual(
      trace.filter((e) => e.ev === 'feed-wait' && e.data.mode === 'wake').slice(0, 5).map((e) => e.data.again ?? 0),
      [0, 1, 0, 1, 2],
      'the feed trace notes the waits that follow a run-out without a feed request',
    );
    assert.ok(!trace.some((e) => e.ev === 'wake' && e.data.stray === true), `no stray: ${JSON.stringify(trace.filter((e) => e.ev === 'wake').map((e) => e.data))}`);
    assert.equal(await run, 'complete');
  });

  it('a pause, a stop or the end of the upload ends a wake-up wait at once (not a stray)', { timeout: 30_000 }, async () => {
    const waiting = async (server: FakeServer): Promise<void> => {
      while (server.feedCalls().at(-1) !== 'W') await delay(2);
    };
    const settled = (server: FakeServer) => server.log.filter((l) => l.what === 'wake-done' || l.what === 'wake-aborted').length;

    // the upload ends while the feed waits on a wake-up URL (held a minute)
    const a = setup(6, 50_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD });
    a.server.wakeUrls = true;
    a.server.wakeHoldMs = 60_000;
    const t0 = performance.now();
    assert.equal(await a.uploader.run(), 'complete');
    assert.ok(performance.now() - t0 < 5000, 'run() did not wait for the wake-up');
    await delay(20);
    assert.equal(a.server.log.filter((l) => l.what === 'wake-aborted').length, 1, 'the wake-up wait was aborted with the run');
    assert.equal(settled(a.server), a.server.log.filter((l) => l.what === 'wake').length, 'no wake-up left waiting');

    // pause while the feed waits: run() ends paused, the wait with it; a stop likewise
    const b = setup(40, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD }); // 10 s
    b.server.wakeUrls = true;
    b.server.wakeHoldMs = 60_000;
    const run = b.uploader.run();
    await waiting(b.server);
    const tPause = performance.now();
    b.uploader.pause();
    assert.equal(await run, 'paused');
    assert.ok(performance.now() - tPause < 2000, `paused after ${(performance.now() - tPause).toFixed(0)} ms`);
    await delay(20);
    assert.equal(settled(b.server), b.server.log.filter((l) => l.what === 'wake').length, 'no wake-up left waiting after the pause');
    const run2 = b.uploader.run();
    await waiting(b.server);
    const tStop = performance.now();
    b.uploader.stop();
    await assert.rejects(run2);
    await delay(50);
    assert.equal(settled(b.server), b.server.log.filter((l) => l.what === 'wake').length, 'no wake-up left waiting after the stop');
    assert.ok(b.server.log.some((l) => l.what === 'wake-aborted' && l.t >= tStop));
    assert.equal(b.server.log.filter((l) => l.what === 'priority' && l.t > tStop).length, 0, 'no feed request after the stop');
    assert.ok(!b.trace.some((e) => e.ev === 'wake' && e.data.stray === true), 'an aborted wake-up is not a stray');
    assert.ok(!a.trace.some((e) => e.ev === 'wake' && e.data.stray === true), 'an aborted wake-up is not a stray');
  });
});

/** A slot whose report waits now (no `next` call or route has taken it yet), once there is one. */
async function waitingReport(trace: Trace): Promise<number> {
  for (;;) {
    const taken = new Set(trace.filter((e) => e.ev === 'reports').flatMap((e) => e.data.slots as number[]));
    const e = trace.find((x) => x.ev === 'report-pending' && !taken.has(x.data.slot as number));
    if (e) return e.data.slot as number;
    await delay(1);
  }
}

describe('batched reports', () => {
  const HOLD = 7000;
  const reports = (server: FakeServer, via: 'route' | 'next') => server.log.filter((l) => l.what === 'reported' && l.via === via);

  it('while nobody watches, parts are reported in the next calls (uploaded), none through the single route, and the run ends with every part reported', { timeout: 30_000 }, async () => {
    const n = 10;
    const { server, uploader, trace } = setup(n, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD }); // 250 ms per part
    server.wakeUrls = true;
    server.wakeHoldMs = 60_000;
    assert.equal(await uploader.run(), 'complete');
    assert.deepEqual(reports(server, 'route').map((l) => l.slot), [], 'no single-route report');
    for (let s = 0; s < n; s++) assert.equal(reports(server, 'next').filter((l) => l.slot === s).length, 1, `slot ${s} reported once, in a next call`);
    const carrying = server.log.filter((l) => l.what === 'next' && l.uploaded!.length > 0);
    assert.ok(carrying.some((l) => l.slots!.length > 0), 'reports rode on next calls that leased parts');
    const flushes = trace.filter((e) => e.ev === 'reports');
    assert.equal(
      flushes.reduce((k, e) => k + (e.data.count as number), 0),
      n,
      JSON.stringify(flushes.map((e) => e.data)),
    );
    assert.ok(flushes.every((e) => e.data.via === 'next'));
    // the last part's report did not wait for a lease request that was not coming
    assert.equal(flushes.at(-1)!.data.reason, 'idle');
    assert.ok(flushes.at(-1)!.t - server.intervals().at(-1)!.end < 100, 'the last report went at once');
    // the status the run ends on counts every part
    assert.equal(uploader.progress().slotsPublished, n);
    assert.ok(uploader.states.every((st) => st === 'published'), uploader.states.join(','));
  });

  it('a part is reported at once through the single route while the feed answers without a wake-up URL, and a priority part even while nobody watches', { timeout: 30_000 }, async () => {
    // a watch page is open (nobody seeks: the feed still offers wake-up URLs); a server from before
    // `watched` that offers no wake-up URL (watched, or no feed queues)
    for (const legacy of [false, true]) {
      const watched = setup(6, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD });
      watched.server.wakeUrls = !legacy;
      watched.server.wakeHoldMs = 60_000;
      watched.server.watched = !legacy;
      watched.server.legacyFeed = legacy;
      assert.equal(await watched.uploader.run(), 'complete');
      for (let s = 0; s < 6; s++) assert.equal(reports(watched.server, 'route').filter((l) => l.slot === s).length, 1, `legacy ${legacy}: slot ${s} reported once, through the route`);
      assert.deepEqual(watched.server.log.filter((l) => l.what === 'next' && l.uploaded!.length > 0), [], `legacy ${legacy}: no next call carried reports`);
      assert.equal(watched.server.log.some((l) => l.what === 'wake'), !legacy, `legacy ${legacy}: waited on wake-ups`);
    }

    // nobody watches; a viewer's window the feed does not hear of (its wake-up lost): only the
    // leases of next say priority
    const n = 12;
    const { server, uploader } = setup(n, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD });
    server.wakeUrls = true;
    server.wakeHoldMs = 60_000;
    const run = uploader.run();
    while (reports(server, 'next').length < 2) await delay(5);
    server.windows = [8];
    server.version++;
    assert.equal(await run, 'complete');
    for (const s of [8, 9]) {
      const rep = reports(server, 'route').filter((l) => l.slot === s);
      assert.equal(rep.length, 1, `priority slot ${s} reported through the route: ${JSON.stringify(server.log.filter((l) => l.slot === s))}`);
      const done = server.intervals().find((i) => i.slot === s && !i.aborted)!;
      assert.ok(rep[0]!.t - done.end < 100, `slot ${s} reported ${(rep[0]!.t - done.end).toFixed(0)} ms after its PUT`);
    }
    assert.equal(reports(server, 'next').filter((l) => l.slot === 8 || l.slot === 9).length, 0);
    assert.ok(reports(server, 'next').length >= n - 4, `the other parts stayed batched: ${reports(server, 'next').map((l) => l.slot)}`);
  });

  it('reports waiting when the feed turns watched go at once (through the route while a next call is held up), and later parts go through the single route', { timeout: 30_000 }, async () => {
    const n = 8;
    const { server, uploader, trace } = setup(n, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD }); // 250 ms per part
    server.wakeUrls = true;
    server.wakeHoldMs = 60_000;
    const run = uploader.run();
    while (reports(server, 'next').length < 2) await delay(2);
    // a next call is held up (e.g. 503s): the part finished meanwhile keeps its report waiting
    const letNext = server.holdNext();
    const slot = await waitingReport(trace);
    await delay(100);
    assert.ok(!server.log.some((l) => l.what === 'reported' && l.slot === slot), `slot ${slot}: its report waits`);
    const t0 = performance.now();
    server.watch(); // a watch page opens
    while (!server.log.some((l) => l.what === 'reported' && l.slot === slot)) await delay(2);
    const rep = server.log.find((l) => l.what === 'reported' && l.slot === slot)!;
    assert.ok(rep.t - t0 < 100, `slot ${slot} reported ${(rep.t - t0).toFixed(0)} ms after the page opened`);
    assert.equal(rep.via, 'route');
    assert.ok(
      trace.some((e) => e.ev === 'reports' && e.data.reason === 'watched' && (e.data.slots as number[]).includes(slot)),
      JSON.stringify(trace.filter((e) => e.ev === 'reports').map((e) => e.data)),
    );
    letNext();
    assert.equal(await run, 'complete');
    for (let s = slot + 1; s < n; s++) assert.equal(reports(server, 'route').filter((l) => l.slot === s).length, 1, `slot ${s} (after) through the route`);
    for (let s = 0; s < n; s++) assert.equal(server.log.filter((l) => l.what === 'reported' && l.slot === s).length, 1, `slot ${s} reported once`);
  });

  it('with no next call coming (the link idle) a waiting report goes at once; one that waited reportWaitMs goes by the route while a next call is held up', { timeout: 30_000 }, async () => {
    const { server, uploader, trace } = setup(8, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD, reportWaitMs: 600 });
    server.wakeUrls = true;
    server.wakeHoldMs = 60_000;
    const run = uploader.run();
    while (reports(server, 'next').length < 2) await delay(2);
    const letNext = server.holdNext();
    const slot = await waitingReport(trace);
    const pendingAt = trace.find((e) => e.ev === 'report-pending' && e.data.slot === slot)!.t;
    while (!server.log.some((l) => l.what === 'reported' && l.slot === slot)) await delay(5);
    const rep = server.log.find((l) => l.what === 'reported' && l.slot === slot)!;
    // the run loop looks at least once a second
    assert.ok(rep.t - pendingAt >= 600 && rep.t - pendingAt < 1700, `slot ${slot} reported ${(rep.t - pendingAt).toFixed(0)} ms after its PUT`);
    assert.equal(rep.via, 'route');
    assert.ok(trace.some((e) => e.ev === 'reports' && e.data.reason === 'waited'));
    letNext();
    assert.equal(await run, 'complete');
    for (let s = 0; s < 8; s++) assert.equal(server.log.filter((l) => l.what === 'reported' && l.slot === s).length, 1, `slot ${s} reported once`);
  });

  it('a refused report (upload_missing) sends the part again with its lease, in a next call as through the single route (409)', { timeout: 30_000 }, async () => {
    for (const unwatched of [true, false]) {
      const via = unwatched ? 'next' : 'route';
      const { server, uploader, trace } = setup(6, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD });
      server.wakeUrls = true;
      server.wakeHoldMs = 60_000;
      server.watched = !unwatched;
      server.missingOnce.add(2);
      assert.equal(await uploader.run(), 'complete', via);
      assert.deepEqual(
        server.log.filter((l) => l.what === 'report-refused').map((l) => [l.slot, l.via]),
        [[2, via]],
      );
      assert.equal(server.log.filter((l) => l.what === 'put-done' && l.slot === 2).length, 2, `${via}: slot 2 sent again`);
      assert.equal(server.urlsBySlot.get(2)!.length, 1, `${via}: with the lease it had (no new one)`);
      assert.deepEqual(server.log.filter((l) => l.what === 'reported' && l.slot === 2).map((l) => l.via), [via], `${via}: reported again, accepted once`);
      assert.ok(trace.some((e) => e.ev === 'report-refused' && e.data.slot === 2 && e.data.code === 'upload_missing'));
      assert.ok(uploader.states.every((st) => st === 'published'), uploader.states.join(','));
    }
  });

  it('a part refused 3 times in a row ends the upload with the refusal (no endless re-sending)', { timeout: 30_000 }, async () => {
    const { server, uploader } = setup(6, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD });
    server.wakeUrls = true;
    server.wakeHoldMs = 60_000;
    server.missingAlways.add(2);
    await assert.rejects(uploader.run(), (e: unknown) => e instanceof ApiError && e.code === 'upload_missing');
    assert.equal(server.log.filter((l) => l.what === 'report-refused' && l.slot === 2).length, 3);
    assert.equal(server.log.filter((l) => l.what === 'put-done' && l.slot === 2).length, 3, 'sent 3 times, not more');
  });

  it('a pause reports the waiting parts through the single route before run() ends', { timeout: 30_000 }, async () => {
    const { server, uploader, trace } = setup(12, 100_000, new FakeLink(400_000), { parallel: 1, priorityWaitMs: HOLD });
    server.wakeUrls = true;
    server.wakeHoldMs = 60_000;
    const run = uploader.run();
    while (reports(server, 'next').length < 2) await delay(2);
    const letNext = server.holdNext();
    const slot = await waitingReport(trace);
    uploader.pause();
    await delay(50);
    letNext(); // the call held up ends (run() waits for the reports it carries)
    assert.equal(await run, 'paused');
    const done = new Set(server.log.filter((l) => l.what === 'put-done').map((l) => l.slot));
    for (const s of done) assert.equal(server.log.filter((l) => l.what === 'reported' && l.slot === s).length, 1, `slot ${s} (sent) reported`);
    assert.ok(
      trace.some((e) => e.ev === 'reports' && e.data.reason === 'pause' && e.data.via === 'route' && (e.data.slots as number[]).includes(slot)),
      JSON.stringify(trace.filter((e) => e.ev === 'reports').map((e) => e.data)),
    );
    await delay(20); // published 5 ms after its report
    assert.equal((await uploader.refreshStatus(true))?.slots.filter((x) => x.state === 'published').length, done.size);
    assert.equal(uploader.progress().slotsPublished, done.size, 'the status counts them');
  });
});
