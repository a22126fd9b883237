/**
 * Upload bandwidth limit, shared by all parallel uploads.
 *
 * Models a serial link of `bitsPerSecond`: a body is "on the wire" for `bytes * 8 / rate` seconds
 * and its PUT is released at the end of that time, so the average upload rate matches the limit
 * and a segment becomes available on the server no earlier than it would over such a link.
 * (Browsers can't stream a paced request body over HTTP/1.1, so pacing is per body, not per
 * packet.)
 *
 * Bodies queue for the link in order of `rank` (lower first; ties first come, first served):
 * a priority segment overtakes natural-order ones that are still waiting, and pre-empts a body of
 * a higher rank that is on the wire (unless that one is nearly through): the pre-empted body goes
 * back to the queue and is sent again in full later — the time it had used is lost, as when a real
 * transfer is aborted and restarted. Cancelling a waiting
 * reservation gives its time back to those behind it; cancelling the one on the wire frees the
 * link at once (the time it already used is lost, as on a real link) — so an aborted transfer
 * never leaves a phantom reservation in front of the segment a viewer is waiting for.
 */

export const NATURAL_RANK = Number.POSITIVE_INFINITY;
/** served before every other waiting body, but never pre-empts the one on the wire */
export const NEXT_RANK = -1;
/** a body on the wire with less than this fraction of its time left is not pre-empted */
const PREEMPT_MIN_LEFT = 0.15;

export interface Reservation {
  /** resolves when the body has crossed the modelled link; rejects with the abort reason if cancelled */
  readonly done: Promise<void>;
  /** move a waiting reservation up (or down) the queue */
  setRank(rank: number): void;
  cancel(reason?: unknown): void;
}

interface Entry {
  bytes: number;
  rank: number;
  seq: number;
  /** when it joined the queue: its modelled start is never earlier */
  queuedAt: number;
  onStart: (() => void) | undefined;
  resolve: () => void;
  reject: (e: unknown) => void;
  settled: boolean;
}

export class Pacer {
  private readonly queue: Entry[] = [];
  private current: { entry: Entry; timer: ReturnType<typeof setTimeout>; start: number; end: number } | null = null;
  /** bodies pushed off the wire by more urgent ones (diagnostics) */
  preemptions = 0;
  private seq = 0;
  /** when the last body finished crossing the link (timer lateness is not added to the next one) */
  private linkFreeAt = 0;

  constructor(readonly bitsPerSecond: number | null) {}

  get limited(): boolean {
    return this.bitsPerSecond !== null && this.bitsPerSecond > 0;
  }

  /** seconds `bytes` spend on the link (0 when unlimited) */
  seconds(bytes: number): number {
    return this.limited ? (bytes * 8) / this.bitsPerSecond! : 0;
  }

  /** bodies waiting for or on the link (for tests and the page's diagnostics) */
  get pending(): number {
    return this.queue.length + (this.current ? 1 : 0);
  }

  /** `onStart`: called when the body goes on the (modelled) wire */
  reserve(bytes: number, rank: number = NATURAL_RANK, onStart?: () => void): Reservation {
    let entry!: Entry;
    const done = new Promise<void>((resolve, reject) => {
      entry = { bytes, rank, seq: this.seq++, queuedAt: performance.now(), onStart, resolve, reject, settled: false };
    });
    // callers that drop a cancelled reservation without awaiting it must not cause an unhandled rejection
    done.catch(() => undefined);
    if (!this.limited) {
      entry.settled = true;
      onStart?.();
      entry.resolve();
    } else {
      this.queue.push(entry);
      this.pump();
      this.preempt();
    }
    return {
      done,
      setRank: (r: number) => {
        entry.rank = r;
        this.preempt();
      },
      cancel: (reason?: unknown) => this.cancel(entry, reason ?? new DOMException('cancelled', 'AbortError')),
    };
  }

  /** Waits until `bytes` have crossed the link (the body may then be sent). */
  async take(bytes: number, signal?: AbortSignal, rank: number = NATURAL_RANK): Promise<void> {
    signal?.throwIfAborted();
    const r = this.reserve(bytes, rank);
    const onAbort = (): void => r.cancel(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await r.done;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  private cancel(entry: Entry, reason: unknown): void {
    if (entry.settled) return;
    entry.settled = true;
    const i = this.queue.indexOf(entry);
    if (i >= 0) this.queue.splice(i, 1);
    if (this.current?.entry === entry) {
      clearTimeout(this.current.timer);
      this.current = null;
      this.linkFreeAt = performance.now();
    }
    entry.reject(reason);
    this.pump();
  }

  /** A more urgent body waits while a less urgent one is on the wire and far from done: swap. */
  private preempt(): void {
    const cur = this.current;
    const urgent = this.queue.filter((e) => e.rank !== NEXT_RANK);
    if (!cur || urgent.length === 0) return;
    const best = urgent.reduce((b, e) => (e.rank < b.rank ? e : b));
    if (best.rank >= cur.entry.rank) return;
    const now = performance.now();
    if (cur.end - now < PREEMPT_MIN_LEFT * (cur.end - cur.start)) return; // nearly through: let it finish
    clearTimeout(cur.timer);
    this.current = null;
    this.linkFreeAt = now;
    this.queue.push(cur.entry); // keeps its seq: first among its rank when it goes again
    this.preemptions++;
    this.pump();
  }

  /** `chained`: called as the previous body left the link, so the next starts exactly then */
  private pump(chained = false): void {
    if (this.current || this.queue.length === 0) return;
    let best = 0;
    for (let i = 1; i < this.queue.length; i++) {
      const a = this.queue[i]!;
      const b = this.queue[best]!;
      if (a.rank < b.rank || (a.rank === b.rank && a.seq < b.seq)) best = i;
    }
    const entry = this.queue.splice(best, 1)[0]!;
    const now = performance.now();
    // chained: a timer firing a few ms late does not slow the modelled link down — but a body
    // that was not waiting yet when the link went free gets no credit for that idle time (else,
    // after a long stall of the page, each body queued after the previous one's release would
    // start in the past, and a burst of them would go at once, far above the cap)
    const start = chained ? Math.min(now, Math.max(this.linkFreeAt, entry.queuedAt)) : Math.max(now, this.linkFreeAt);
    const end = start + this.seconds(entry.bytes) * 1000;
    const timer = setTimeout(() => {
      this.current = null;
      this.linkFreeAt = end;
      entry.settled = true;
      entry.resolve();
      this.pump(true);
    }, Math.max(0, end - now));
    this.current = { entry, timer, start, end };
    entry.onStart?.();
  }
}
