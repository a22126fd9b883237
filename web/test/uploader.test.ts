/**
 * The upload loop against a fake API (no network): priorities arrive through the long poll,
 * the uploader asks for them at once, yields the link (aborting natural-order slots that have
 * not crossed it) and sends the yielded slots again afterwards with the URLs it already holds.
 * Plus the bandwidth pacer's queue: ranks, cancellation, no phantom reservations.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '../src/lib/api.ts';
import type { Assignment, NextResponse, PresignedUpload, PriorityResponse, StatusResponse } from '../src/lib/api.ts';
import type { Analysis } from '../src/lib/analyze.ts';
import { Pacer } from '../src/lib/pacer.ts';
import type { Plan } from '../src/lib/planner.ts';
import { Uploader } from '../src/lib/uploader.ts';
import type { SegmentSource, UploaderApi } from '../src/lib/uploader.ts';

type St = 'pending' | 'assigned' | 'uploaded' | 'published';

const delay = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** A tiny in-memory server: windows first (nearest the playhead), then natural order; leases never expire. */
class FakeServer implements UploaderApi {
  readonly slots: St[];
  version = 0;
  windows: number[] = [];
  private waiters = new Set<() => void>();
  readonly log: { t: number; what: string; slot?: number; slots?: number[]; url?: string; aborted?: boolean }[] = [];
  readonly urlsBySlot = new Map<number, string[]>();
  private issued = 0;
  priorityMissing = false;

  constructor(
    n: number,
    private readonly windowLen = 2,
  ) {
    this.slots = Array.from({ length: n }, () => 'pending' as St);
  }

  private at(): number {
    return performance.now();
  }

  prioritize(slot: number): void {
    this.windows = [slot];
    this.version++;
    this.log.push({ t: this.at(), what: 'prioritize', slot });
    for (const w of this.waiters) w();
  }

  prioritySlots(): number[] {
    const out: number[] = [];
    for (const p of this.windows) for (let s = p; s < Math.min(this.slots.length, p + this.windowLen); s++) if (this.slots[s] !== 'published') out.push(s);
    return out;
  }

  private upload(slot: number): PresignedUpload {
    const url = `fake://${slot}/${this.issued++}`;
    return { track_id: 1, method: 'PUT', url, headers: {}, expires_at: new Date(Date.now() + 600_000).toISOString() };
  }

  async next(_id: string, _secret: string, max: number): Promise<NextResponse> {
    await delay(2);
    const picks: Assignment[] = [];
    const take = (s: number, priority: boolean) => {
      if (picks.length >= max || this.slots[s] !== 'pending' || picks.some((p) => p.slot === s)) return;
      this.slots[s] = 'assigned';
      const up = this.upload(s);
      this.urlsBySlot.set(s, [...(this.urlsBySlot.get(s) ?? []), up.url]);
      picks.push({ slot: s, priority, lease_expires_at: new Date(Date.now() + 120_000).toISOString(), uploads: [up] });
    };
    for (const s of this.prioritySlots()) take(s, true);
    for (let s = 0; s < this.slots.length; s++) take(s, false);
    this.log.push({ t: this.at(), what: 'next', slots: picks.map((p) => p.slot) });
    return { assignments: picks, complete: this.slots.every((s) => s === 'published'), remaining: 0, priority_slots: this.prioritySlots() };
  }

  async reportUploaded(_id: string, _secret: string, slot: number): Promise<{ slot: number; queue: string }> {
    await delay(2);
    if (this.slots[slot] === 'published') throw new ApiError(409, 'already_published', 'already published');
    this.slots[slot] = 'uploaded';
    this.log.push({ t: this.at(), what: 'reported', slot });
    setTimeout(() => {
      this.slots[slot] = 'published';
      if (this.prioritySlots().length === 0 && this.windows.length) this.windows = [];
    }, 5);
    return { slot, queue: this.windows.length ? 'priority' : 'normal' };
  }

  async status(): Promise<StatusResponse> {
    return {
      video_id: 'v',
      complete: this.slots.every((s) => s === 'published'),
      slot_count: this.slots.length,
      duration: this.slots.length,
      counts: { pending: 0, assigned: 0, uploaded: 0, published: 0, failed: 0 },
      slots: this.slots.map((state, i) => ({ start: i, duration: 1, state })),
      priority_slots: this.prioritySlots(),
    };
  }

  async put(upload: PresignedUpload, _body: Blob | Uint8Array, signal?: AbortSignal): Promise<void> {
    const slot = Number(/^fake:\/\/(\d+)\//.exec(upload.url)![1]);
    this.log.push({ t: this.at(), what: 'put-start', slot, url: upload.url });
    try {
      await delay(3, signal);
    } catch (e) {
      this.log.push({ t: this.at(), what: 'put-aborted', slot, url: upload.url });
      throw e;
    }
    this.log.push({ t: this.at(), what: 'put-done', slot, url: upload.url });
  }

  async priority(_id: string, _secret: string, after: number | null, waitMs: number, signal?: AbortSignal): Promise<PriorityResponse> {
    if (this.priorityMissing) throw new ApiError(404, 'not_found', 'no route');
    if (after === null || after !== this.version) return { version: this.version, priority_slots: this.prioritySlots() };
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
    return { version: this.version, priority_slots: this.prioritySlots() };
  }
}

function fakeMedia(n: number, bytes: number): { analysis: Analysis; plan: Plan; segmenter: SegmentSource } {
  const analysis = { tracks: [{ id: 1, initSegment: new Uint8Array(10) }] } as unknown as Analysis;
  const plan = { slots: Array.from({ length: n }, () => ({ bytes, tracks: [{ size: bytes }] })), totalBytes: n * bytes } as unknown as Plan;
  const segmenter: SegmentSource = { buildSlot: async (_slot, tracks) => tracks.map(() => new Blob([new Uint8Array(bytes)])) };
  return { analysis, plan, segmenter };
}

describe('uploader priorities', () => {
  it('a priority slot is asked for at once and overtakes the slots in flight, which are sent again afterwards', { timeout: 30_000 }, async () => {
    const n = 30;
    const bytes = 10_000; // 100 ms per slot on an 800 kbit/s link
    const server = new FakeServer(n);
    const { analysis, plan, segmenter } = fakeMedia(n, bytes);
    const trace: { t: number; ev: string; data: Record<string, unknown> }[] = [];
    const uploader = new Uploader(server, 'v', 's', analysis, plan, segmenter, { parallel: 3, pacer: new Pacer(800_000), statusIntervalMs: 200 }, {
      onTrace: (ev, data) => trace.push({ t: performance.now(), ev, data }),
    });
    const run = uploader.run();
    // let natural order get going, then a viewer seeks far ahead
    while (server.log.filter((l) => l.what === 'reported').length < 3) await delay(5);
    const inFlight = [...new Set(server.log.filter((l) => l.what === 'next').flatMap((l) => l.slots ?? []))].filter(
      (s) => !server.log.some((l) => l.what === 'reported' && l.slot === s),
    );
    const tPrio = performance.now();
    server.prioritize(20);
    assert.equal(await run, 'complete');

    const first = (what: string, slot: number) => server.log.find((l) => l.what === what && l.slot === slot);
    const nextFor20 = server.log.find((l) => l.what === 'next' && l.slots?.includes(20))!;
    const reported20 = first('reported', 20)!;
    const linkStart20 = trace.find((e) => e.ev === 'link-start' && e.data.slot === 20)!;
    console.log(
      `in flight at the prioritize: ${inFlight.join(',')}; next for slot 20 after ${(nextFor20.t - tPrio).toFixed(1)} ms, ` +
        `on the link after ${(linkStart20.t - tPrio).toFixed(1)} ms, reported after ${(reported20.t - tPrio).toFixed(1)} ms`,
    );
    assert.ok(inFlight.length >= 2, `slots in flight at the prioritize: ${inFlight}`);
    // the long poll wakes the uploader and it asks at once (no waiting for a free lane)
    assert.ok(nextFor20.t - tPrio < 60, `next for the priority slot ${nextFor20.t - tPrio} ms after the prioritize`);
    // no phantom reservation: the priority slot goes on the link at once, and is done after ~one slot time
    assert.ok(linkStart20.t - tPrio < 80, `priority slot on the link ${linkStart20.t - tPrio} ms after the prioritize`);
    assert.ok(reported20.t - tPrio < 100 + 120, `priority slot reported ${reported20.t - tPrio} ms after the prioritize`);
    for (const s of inFlight) {
      const rep = first('reported', s);
      assert.ok(rep && rep.t > reported20.t, `slot ${s} (in flight at the prioritize) was reported after the priority slot`);
    }
    // the window's second slot also came before the yielded ones
    assert.ok(first('reported', 21)!.t < Math.min(...inFlight.map((s) => first('reported', s)!.t)));
    // yielded slots were aborted and sent again with the URLs they already had (one lease each)
    const yielded = trace.filter((e) => e.ev === 'yield').flatMap((e) => e.data.slots as number[]);
    assert.ok(yielded.length >= 1, 'some natural-order slots yielded the link');
    for (let s = 0; s < n; s++) {
      assert.equal(server.urlsBySlot.get(s)?.length, 1, `slot ${s} was assigned once`);
      assert.equal(server.log.filter((l) => l.what === 'reported' && l.slot === s).length, 1, `slot ${s} reported once`);
      const puts = server.log.filter((l) => l.what === 'put-done' && l.slot === s);
      assert.equal(puts.length, 1, `slot ${s}: one complete PUT`);
      assert.equal(puts[0]!.url, server.urlsBySlot.get(s)![0]);
    }
  });

  it('viewers keeping the link busy do not starve natural order (one slot every naturalEveryMs)', { timeout: 30_000 }, async () => {
    const n = 100;
    const server = new FakeServer(n);
    const { analysis, plan, segmenter } = fakeMedia(n, 10_000); // 100 ms per slot
    const uploader = new Uploader(server, 'v', 's', analysis, plan, segmenter, {
      parallel: 3,
      pacer: new Pacer(800_000),
      statusIntervalMs: 200,
      naturalEveryMs: 500,
    });
    const run = uploader.run();
    while (server.log.filter((l) => l.what === 'reported').length < 2) await delay(5);
    // a viewer hopping ahead faster than the upload can follow: priority work never runs out
    const t0 = performance.now();
    let far = 40;
    while (performance.now() - t0 < 3000 && far < n - 2) {
      server.prioritize(far);
      far += 1;
      await delay(150);
    }
    const t1 = performance.now();
    const naturalDuring = server.log.filter((l) => l.what === 'reported' && l.slot! < 40 && l.t > t0 + 300 && l.t < t1).length;
    const priorityDuring = server.log.filter((l) => l.what === 'reported' && l.slot! >= 40 && l.t > t0 && l.t < t1).length;
    console.log(`in ${((t1 - t0) / 1000).toFixed(1)} s of continuous priority work: ${priorityDuring} priority slots, ${naturalDuring} natural-order slots`);
    assert.ok(priorityDuring >= 10, `${priorityDuring} priority slots`);
    assert.ok(naturalDuring >= 2, `natural order got ${naturalDuring} slots`);
    assert.equal(await run, 'complete');
  });

  it('without a priority feed (older server) it follows the status poll', { timeout: 30_000 }, async () => {
    const n = 24;
    const server = new FakeServer(n);
    server.priorityMissing = true;
    const { analysis, plan, segmenter } = fakeMedia(n, 10_000);
    const uploader = new Uploader(server, 'v', 's', analysis, plan, segmenter, { parallel: 2, pacer: new Pacer(800_000), statusIntervalMs: 100 });
    const run = uploader.run();
    while (server.log.filter((l) => l.what === 'reported').length < 2) await delay(5);
    server.prioritize(18);
    const t = performance.now();
    assert.equal(await run, 'complete');
    const rep = server.log.find((l) => l.what === 'reported' && l.slot === 18)!;
    assert.ok(rep.t - t < 500, `slot 18 reported ${rep.t - t} ms after the prioritize`);
    const order = server.log.filter((l) => l.what === "reported").map((l) => l.slot);
    assert.ok(order.indexOf(18) < 10, `slot 18 came out of natural order: ${order}`);
  });
});

describe('pacer queue', () => {
  it('serves lower ranks first and gives a cancelled reservation’s time back', async () => {
    const pacer = new Pacer(800_000); // 10 kB = 100 ms
    const order: string[] = [];
    const t0 = performance.now();
    const a = pacer.reserve(10_000, 5); // on the wire at once
    const b = pacer.reserve(10_000, 5);
    const c = pacer.reserve(10_000, 5);
    for (const [name, r] of [['a', a], ['b', b], ['c', c]] as const) void r.done.then(() => order.push(name), () => order.push(`${name}✗`));
    await delay(90); // a is nearly through: not pre-empted
    const p = pacer.reserve(10_000, 0); // overtakes b and c
    void p.done.then(() => order.push('p'));
    b.cancel();
    await c.done;
    const ms = performance.now() - t0;
    assert.deepEqual(order, ['b✗', 'a', 'p', 'c']);
    assert.ok(ms >= 290 && ms < 400, `3 bodies took ${ms} ms (the cancelled one left no gap)`);
    assert.equal(pacer.preemptions, 0);
  });

  it('a more urgent body pre-empts a less urgent one on the wire, which goes again in full', async () => {
    const pacer = new Pacer(800_000);
    const order: string[] = [];
    const t0 = performance.now();
    const a = pacer.reserve(10_000, 3);
    const c = pacer.reserve(10_000);
    void a.done.then(() => order.push('a'));
    void c.done.then(() => order.push('c'));
    await delay(30);
    const p = pacer.reserve(10_000, 0);
    await p.done;
    assert.ok(performance.now() - t0 < 160, 'the urgent body did not wait for the one on the wire');
    await c.done;
    const ms = performance.now() - t0;
    assert.deepEqual(order, ['a', 'c']);
    assert.equal(pacer.preemptions, 1);
    assert.ok(ms >= 320 && ms < 450, `${ms} ms: 30 ms lost to the pre-empted transfer, then 3 × 100 ms`);
  });

  it('cancelling the body on the wire frees the link at once', async () => {
    const pacer = new Pacer(800_000);
    const t0 = performance.now();
    const a = pacer.reserve(100_000); // 1 s
    await delay(50);
    const p = pacer.reserve(10_000, 0);
    a.cancel();
    await assert.rejects(a.done);
    await p.done;
    const ms = performance.now() - t0;
    assert.ok(ms >= 140 && ms < 250, `priority body done after ${ms} ms`);
    assert.equal(pacer.pending, 0);
  });

  it('take() honours an abort signal', async () => {
    const pacer = new Pacer(800_000);
    const ctrl = new AbortController();
    const t = pacer.take(100_000, ctrl.signal);
    setTimeout(() => ctrl.abort(new DOMException('x', 'AbortError')), 20);
    await assert.rejects(t);
    const t1 = performance.now();
    await pacer.take(1000);
    assert.ok(performance.now() - t1 < 40);
  });
});
