/** The optional user upload cap (`?bw=`): its queue by rank, cancellation, no phantom reservations. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pacer } from '../src/lib/pacer.ts';

const delay = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

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

  it('after a stall of the page (a late timer), two pipelines feeding it keep the cap instead of catching up in a burst', async () => {
    const pacer = new Pacer(800_000); // 10 kB = 100 ms
    // two upload pipelines: one body on the wire, the next already waiting (as with par=2)
    const a = pacer.take(10_000);
    const b = pacer.take(10_000);
    const stallUntil = performance.now() + 600;
    while (performance.now() < stallUntil); // the main thread blocked: a's timer fires 500 ms late
    const t0 = performance.now();
    const pipeline = async (first: Promise<void>): Promise<void> => {
      await first;
      for (let i = 0; i < 3; i++) await pacer.take(10_000); // each queued as the one before is released
    };
    await Promise.all([pipeline(a), pipeline(b)]);
    const ms = performance.now() - t0;
    // a and b were waiting during the stall and may go at once; the 6 bodies queued after it may not
    assert.ok(ms >= 550, `6 bodies of 100 ms each went in ${ms.toFixed(0)} ms after the stall`);
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
