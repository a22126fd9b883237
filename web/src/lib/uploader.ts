/**
 * Upload loop, scheduled for the physics of one uplink of unknown speed.
 *
 *  - The bytes a viewer waits for never share the link: init segments, then part 0 alone (no other
 *    part starts until its PUT has completed); after a seek the part at the viewer's playhead goes
 *    alone too, and natural-order PUTs in flight are aborted unless measured progress says they are
 *    nearly through (XHR upload progress, real bytes). Aborted parts keep their lease and URLs and
 *    go again later.
 *  - Natural order keeps the pipe full without splitting it: the next PUT starts only when the one
 *    on the link has handed all but its last few bytes to the network. More than one PUT at a time
 *    only when measurement shows one cannot fill the link (a probe: two streams must beat one by
 *    PROBE_GAIN, as on high-RTT paths), up to `parallel`.
 *  - Throughput comes from progress events (LinkMeter), never from a setting.
 *  - Viewers' priorities arrive through a long poll (GET …/priority) whose answer also carries the
 *    leased, presigned assignment of the slots it names, so a seek costs no extra round trip. While
 *    nobody watches, the answer offers a wake-up URL (an SQS long poll) to wait on instead of holding
 *    the API's poll open; the next poll then asks with no hold. A wake-up that ran out (nothing rang)
 *    is followed by another wait on the same URL, the API asked only every WAKE_ASK_EVERY-th time.
 *  - Reports: a finished part is reported at once (POST …/uploaded) when a viewer waits for it or
 *    someone watches; while nobody watches, reports wait and ride on the next POST next (`uploaded`),
 *    which saves a request and a state write per part (see flushReason for when they go anyway).
 *  - Side uploads (seek-bar preview sprites, tens of KB) go one at a time as soon as they are made,
 *    ahead of natural-order parts and beside a natural-order PUT on the link (part 0's too: it keeps
 *    the link to itself against other parts, for the first viewer, but a sprite is not a part), so
 *    the previews are public before part 0 completes on a slow link. Never ahead of or beside a part
 *    a viewer waits for (part 0 included, once a viewer has asked for it): a side upload with much
 *    left to write gives the link up to it, as a natural-order PUT does, and goes again afterwards.
 * Each slot's segments are generated only when the slot is about to be sent (plus one ahead).
 */
import { ApiError, isTransient, retryDelayMs, sleep, withRetry } from './api.ts';
import type { Api, Assignment, PresignedUpload, PriorityResponse, RetryOptions, SlotReport, StatusResponse } from './api.ts';
import type { Analysis } from './analyze.ts';
import { LinkMeter } from './link-meter.ts';
import type { MeterMark } from './link-meter.ts';
import { NATURAL_RANK, NEXT_RANK } from './pacer.ts';
import type { Pacer } from './pacer.ts';
import type { Plan } from './planner.ts';

export type LocalSlotState = 'pending' | 'assigned' | 'generating' | 'uploading' | 'uploaded' | 'published' | 'failed';

export interface ProgressInfo {
  bytesDone: number;
  bytesTotal: number;
  /** measured upload rate, bytes/s (progress events over the last few seconds of link time) */
  bytesPerSecond: number;
  etaSeconds: number | null;
  slotCount: number;
  slotsPublished: number;
  slotsUploaded: number;
  slotsFailed: number;
  /** PUT streams the uploader currently allows in natural order (1 unless measured otherwise) */
  streams: number;
}

export interface UploaderCallbacks {
  onSlotStates?(states: readonly LocalSlotState[]): void;
  onProgress?(p: ProgressInfo): void;
  /** a network problem being retried (null: back to normal) */
  onConnection?(problem: string | null): void;
  onStatus?(s: StatusResponse): void;
  onLog?(message: string): void;
  /** nothing to send right now, and why (null: sending again) */
  onIdle?(reason: string | null): void;
  /** timeline events (priority, put-start/-done/-abort, rate, streams…) for diagnostics, tests and benchmarks */
  onTrace?(event: string, data: Record<string, unknown>): void;
}

export interface UploaderOptions {
  /** most PUT streams at once (natural order; measured need decides below it) */
  parallel: number;
  /** optional user upload cap (`?bw=`); never used to estimate the link */
  pacer?: Pacer;
  statusIntervalMs?: number;
  /** long-poll hold time for GET …/priority (default 20 s; the server caps it at 25 s) */
  priorityWaitMs?: number;
  /** how long a wait on a wake-up URL may last before the feed is asked anyway (default 30 s; SQS holds 20 s) */
  wakeMaxMs?: number;
  /** a wake-up that lasted this long ran out (SQS held it the full 20 s: nothing rang; default 19.7 s) */
  wakeRunOutMs?: number;
  /** while nobody watches, a part's report waits at most this long for a `next` call to carry it (default 30 s) */
  reportWaitMs?: number;
  /** while priority slots keep the link busy, one natural-order slot still goes this often (default 20 s) */
  naturalEveryMs?: number;
  /** a natural-order PUT with less than this much measured time left is not pre-empted (default 250 ms) */
  preemptKeepMs?: number;
  /**
   * Small extra objects (seek-bar preview sprites), made while the upload runs: sent one at a
   * time as soon as they are made, ahead of (and beside) natural-order parts, never ahead of or
   * beside a part a viewer waits for.
   */
  sideUploads?: () => Promise<SideUpload[]>;
}

/** An extra object PUT through a presigned URL, then confirmed with `published`. */
export interface SideUpload {
  label: string;
  upload: PresignedUpload;
  body: Blob;
  published?: () => Promise<unknown>;
}

/** What the uploader needs from the API client (a fake in the unit tests). */
export type UploaderApi = Pick<Api, 'next' | 'reportUploaded' | 'status' | 'put' | 'priority' | 'wake'>;

/** Builds a slot's segments (the real one is `Segmenter`). */
export interface SegmentSource {
  buildSlot(slot: number, trackIndexes: readonly number[]): Promise<Blob[]>;
}

type PutPhase = 'building' | 'pacing' | 'sending' | 'reporting';

interface Put {
  a: Assignment;
  /** position in the viewers' priority list (0 = at a playhead); NATURAL_RANK / NEXT_RANK otherwise */
  rank: number;
  ctrl: AbortController;
  phase: PutPhase;
  bytes: number;
  /** bytes handed to the network, per track (XHR progress: written to the socket, not yet delivered) */
  loaded: number[];
  /** no other part may start until this PUT has completed (part 0, a viewer's playhead part) */
  exclusive: boolean;
  /** aborted to give the link to a priority slot: keep the assignment, send it again later */
  yielded: boolean;
  startedAt: number;
}

/** A side upload on its way: waiting for the pacer, on the link, or being confirmed. */
interface SideFlight {
  /** started by the starvation guard: it does not give the link up to a viewer's part */
  guard: boolean;
  s: SideUpload;
  ctrl: AbortController;
  phase: 'pacing' | 'sending' | 'reporting';
  /** bytes handed to the network (XHR progress) */
  loaded: number;
  startedAt: number;
  /** aborted to give the link to a part a viewer waits for: queued again */
  yielded: boolean;
}

/** A finished part whose report waits for a `next` call (nobody watches). */
interface PendingReport {
  slot: number;
  /** its lease: a refused report sends the part again with it */
  a: Assignment;
  since: number;
}

/** What a report's answer says, from the single route (202 or 409) or a `next` call's `reports` entry. */
type ReportAnswer = Partial<Pick<SlotReport, 'queue' | 'published' | 'error' | 'message'>>;

interface Candidate {
  slot: number;
  rank: number;
  a: Assignment | null;
}

/** a kept assignment is sent only if its URLs stay valid at least this long */
const URL_MARGIN_MS = 60_000;
/** rank of a slot the server marked priority that the long poll has not listed (yet) */
const UNLISTED_PRIORITY_RANK = 1000;
/** a PUT with at most this much left to deliver (or this much link time) is in its tail: the next may start */
const TAIL_MIN_BYTES = 1024;
const TAIL_SECONDS = 0.03;
/**
 * A PUT with at most this much not yet handed to the socket has nothing left to write: its bytes sit
 * in the OS send buffer (and the modem's queue) and cross the link whether or not it is aborted, so
 * aborting it saves nothing. (The browser reads a body in chunks of about this size.)
 */
const WRITTEN_SLACK_BYTES = 64 * 1024;
/** a new PUT waits at most this long for the report of a part a viewer waits for */
const REPORT_HOLD_MS = 150;
/** the link rate from whole PUTs uses the last this many that had the link (nearly) alone… */
const SOLO_PUTS_KEPT = 3;
/** …measured within this long (after that, progress events again) */
const SOLO_MAX_AGE_MS = 15_000;
/** a PUT that shared the link for at most this fraction of its time counts as alone */
const SOLO_MAX_SHARED = 0.1;
/** window slots the priority feed leases with its answer */
const FEED_LEASE = 2;
/**
 * A wake-up that came back sooner than this with nothing new (or failed outright) is stray: a
 * wake-up URL that does not work here (a signature the queue refuses answers at once)…
 */
const WAKE_STRAY_MS = 1000;
/** …and after this many in a row the feed holds its poll again for the rest of the run */
const WAKE_MAX_STRAYS = 3;
/**
 * A wake-up that lasted this long ran out: SQS held it its full 20 s, so nothing rang. The next wait
 * goes on the same URL without asking the API, except every WAKE_ASK_EVERY-th run-out in a row (a
 * safety net about once a minute, which also brings a fresh URL well before its 10-minute expiry).
 */
const WAKE_RUN_OUT_MS = 19_700;
const WAKE_ASK_EVERY = 3;
/** reports waiting for a `next` call are sent once there are this many… */
const REPORT_BATCH = 4;
/** …and a `next` call carries at most this many (the server's limit) */
const NEXT_MAX_REPORTS = 16;
/** report refusals whose answer is to PUT the part again (the lease stays ours) */
const REFUSED_RESEND = new Set(['upload_missing', 'upload_size_mismatch']);
/** a part refused this many times in a row ends the upload (something else is wrong) */
const MAX_REFUSALS = 3;
/** a probe keeps one more stream only if the link got this much faster with it */
const PROBE_GAIN = 1.15;
const PROBE_FIRST_AFTER_PARTS = 6;
/** a probe lasts at least this much link time */
const PROBE_MIN_MS = 1500;
const PROBE_MAX_INTERVAL_PARTS = 96;
/** natural-order leases held ready beyond the PUTs on the link */
const NATURAL_AHEAD = 1;

interface Probe {
  /** the stream count being tried */
  streams: number;
  baseline: number;
  mark: MeterMark;
  partsLeft: number;
}

export class Uploader {
  readonly states: LocalSlotState[];
  private readonly serverStates: LocalSlotState[];
  private readonly abort = new AbortController();
  private readonly meter = new LinkMeter();
  private initBytesDone = 0;
  private fatal: unknown = null;
  private statusTimer: ReturnType<typeof setInterval> | null = null;
  /** the status poll in flight */
  private polling: Promise<StatusResponse | null> | null = null;
  private pausing = false;
  private running = false;
  private readonly initBytes: number;

  /** slots being built / paced / sent / reported by this tab */
  private readonly puts = new Map<number, Put>();
  /** leases in hand (URLs valid) that are not on the link */
  private readonly held = new Map<number, Assignment>();
  /** built segments of slots about to go (the current one and one ahead) */
  private readonly built = new Map<number, Promise<Blob[]>>();
  private generation: Promise<unknown> = Promise.resolve();
  /** latest answer of the priority long poll */
  private prio: { version: number | null; slots: number[]; rank: Map<number, number> } = { version: null, slots: [], rank: new Map() };
  /** slots asked for with POST next under the current priority version */
  private readonly asked = new Set<number>();
  private asking = false;
  private prioFromStatus = false;
  /** when a natural-order slot last went on the link (starvation guard) */
  private lastNaturalAt = 0;
  /** since when the side uploads have waited (they became ready, or the last one started) */
  private sideWaitingSince = 0;
  private serverComplete = false;
  private wake: (() => void) | null = null;
  private kicked = false;

  /** natural-order streams allowed now, and the measurement behind it */
  private streams = 1;
  private probe: Probe | null = null;
  private partsSinceProbe = 0;
  private probeInterval = PROBE_FIRST_AFTER_PARTS;
  private lastRateTrace = 0;
  /** POST next had nothing to give: natural leases are not asked for again before this */
  private naturalDryUntil = 0;
  /** side uploads (previews): waiting, on the link, and the producer until it has answered */
  private readonly sideQueue: SideUpload[] = [];
  private readonly sides = new Set<SideFlight>();
  private sideProducer: Promise<void> | null = null;
  /** the init segments' PUTs until they are answered (run() waits for them) */
  private initsPending: Promise<void> | null = null;
  /** reports of parts viewers wait for, in flight: no new PUT starts meanwhile */
  private reportHolds = 0;
  /** finished parts whose reports wait for a `next` call (nobody watches), oldest first */
  private readonly pendingReports: PendingReport[] = [];
  /** reports on their way (in a `next` call or the single route) */
  private readonly sentReports = new Set<PendingReport>();
  /** the last feed answer said nobody watches (`watched: false`; older servers: a wake-up URL) and named no priority slot */
  private unwatched = false;
  /** refused reports per slot, in a row */
  private readonly refusals = new Map<number, number>();
  /** recent PUTs that (nearly) had the link alone: bytes, start → response time, when */
  private readonly solo: { bytes: number; ms: number; at: number }[] = [];
  /** when recent PUTs were on the link (for the overlap of the next ones) */
  private readonly sendingIntervals: { start: number; end: number }[] = [];

  constructor(
    private readonly api: UploaderApi,
    readonly videoId: string,
    private readonly secret: string,
    private readonly analysis: Analysis,
    private readonly plan: Plan,
    private readonly segmenter: SegmentSource,
    private readonly opts: UploaderOptions,
    private readonly cb: UploaderCallbacks = {},
  ) {
    this.states = plan.slots.map(() => 'pending');
    this.serverStates = plan.slots.map(() => 'pending');
    this.initBytes = analysis.tracks.reduce((n, t) => n + t.initSegment.byteLength, 0);
  }

  /** Finish the slots in flight, take no new ones; run() then resolves with 'paused'. */
  pause(): void {
    this.pausing = true;
    this.kick();
  }

  stop(): void {
    // finished parts are never left unreported: those waiting (or on their way in a call the abort
    // cuts) go by the single route, best effort and detached from this uploader (the page has moved
    // on; a repeated report is harmless)
    const left = [...this.pendingReports.splice(0), ...this.sentReports];
    if (left.length && !this.abort.signal.aborted) {
      this.trace('reports', { count: left.length, reason: 'stop', via: 'route' });
      for (const r of left) void withRetry(() => this.api.reportUploaded(this.videoId, this.secret, r.slot), { maxAttempts: 3 }).catch(() => undefined);
    }
    this.abort.abort(new DOMException('stopped', 'AbortError'));
    if (this.statusTimer) clearInterval(this.statusTimer);
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  /** measured upload rate in bytes/s (null until measured) */
  get measuredRate(): number | null {
    return this.meter.rate();
  }

  private trace(event: string, data: Record<string, unknown> = {}): void {
    this.cb.onTrace?.(event, data);
  }

  private retryOpts(signal: AbortSignal = this.abort.signal) {
    return {
      signal,
      onRetry: (e: unknown, attempt: number, delay: number) =>
        this.cb.onConnection?.(`Connection problem (${describe(e)}); retrying in ${Math.ceil(delay / 1000)} s (attempt ${attempt + 1})`),
      onRecovered: () => this.cb.onConnection?.(null),
    };
  }

  private setState(slot: number, state: LocalSlotState): void {
    this.states[slot] = state;
    this.cb.onSlotStates?.(this.states);
    this.emitProgress();
  }

  /** Apply a status response: server states win except for slots this tab is working on. */
  applyStatus(s: StatusResponse): void {
    s.slots.forEach((slot, i) => {
      if (i >= this.states.length) return;
      this.serverStates[i] = slot.state;
      const local = this.states[i];
      const busy = local === 'generating' || local === 'uploading';
      if (!busy || slot.state === 'published') this.states[i] = slot.state === 'assigned' && local === 'uploaded' ? 'uploaded' : slot.state;
    });
    if (s.complete) this.serverComplete = true;
    this.cb.onStatus?.(s);
    this.cb.onSlotStates?.(this.states);
    this.emitProgress();
    if (this.prioFromStatus && this.running) this.onPriority({ version: null, priority_slots: s.priority_slots ?? [] });
  }

  progress(): ProgressInfo {
    let bytesDone = this.initBytesDone;
    let published = 0;
    let uploaded = 0;
    let failed = 0;
    this.states.forEach((st, i) => {
      if (st === 'published') published++;
      if (st === 'uploaded') uploaded++;
      if (st === 'failed') failed++;
      if (st === 'published' || st === 'uploaded') bytesDone += this.plan.slots[i]!.bytes;
    });
    const bytesTotal = this.plan.totalBytes + this.initBytes;
    const bytesPerSecond = this.meter.rate() ?? 0;
    const left = bytesTotal - bytesDone;
    const etaSeconds = left <= 0 ? 0 : bytesPerSecond > 0 ? left / bytesPerSecond : null;
    return {
      bytesDone: Math.min(bytesDone, bytesTotal),
      bytesTotal,
      bytesPerSecond,
      etaSeconds,
      slotCount: this.states.length,
      slotsPublished: published,
      slotsUploaded: uploaded,
      slotsFailed: failed,
      streams: this.streams,
    };
  }

  private emitProgress(): void {
    this.cb.onProgress?.(this.progress());
  }

  /**
   * Polls the status once. While a poll is in flight another call returns null at once, unless
   * `fresh`: then it waits for that poll and asks again, since its answer may predate what the
   * caller knows (the end of the upload, a pause), and the page shows what comes back last.
   */
  async refreshStatus(fresh = false): Promise<StatusResponse | null> {
    if (this.polling) {
      if (!fresh) return null;
      await this.polling;
    }
    const poll = this.pollStatus();
    this.polling = poll;
    try {
      return await poll;
    } finally {
      if (this.polling === poll) this.polling = null;
    }
  }

  private async pollStatus(): Promise<StatusResponse | null> {
    try {
      const s = await this.api.status(this.videoId, this.abort.signal);
      this.applyStatus(s);
      return s;
    } catch (e) {
      if (!this.abort.signal.aborted) this.cb.onLog?.(`status: ${describe(e)}`);
      return null;
    }
  }

  /** One PUT with retries on transient failures; progress goes to the link meter. */
  private async putMeasured(upload: PresignedUpload, body: Blob | Uint8Array, signal: AbortSignal, onLoaded?: (loaded: number) => void): Promise<void> {
    await withRetry(async () => {
      let sent = 0;
      this.meter.begin();
      try {
        await this.api.put(upload, body, signal, (loaded) => {
          const delta = loaded - sent;
          if (delta <= 0) return;
          sent = loaded;
          this.meter.add(delta);
          onLoaded?.(loaded);
          this.onProgressTick();
        });
      } finally {
        this.meter.end();
      }
    }, this.retryOpts(signal));
  }

  /**
   * Puts the init segments on the link (all at once: they are a few KB) and resolves once their
   * bytes are written, so part 0 can follow at once; run() waits for their answers before it
   * reports the upload complete, and fails if they fail. Meanwhile the first leases are fetched
   * and part 0 is built.
   */
  async uploadInit(uploads: PresignedUpload[]): Promise<void> {
    const tracks = uploads.map((u) => {
      const track = this.analysis.tracks.find((t) => t.id === u.track_id);
      if (!track) throw new Error(`server asked for an init segment of unknown track ${u.track_id}`);
      return track;
    });
    if (!this.asking && this.held.size === 0) void this.fetchLeases(this.streams + NATURAL_AHEAD, 'natural');
    const written: Promise<void>[] = [];
    const answered = uploads.map(async (u, i) => {
      const body = tracks[i]!.initSegment;
      let onWritten = (): void => undefined;
      written.push(new Promise<void>((resolve) => (onWritten = resolve)));
      try {
        await this.opts.pacer?.take(body.byteLength, this.abort.signal, 0);
        this.trace('init-start', { track: u.track_id, bytes: body.byteLength });
        await this.putMeasured(u, body, this.abort.signal, (loaded) => {
          if (loaded >= body.byteLength) onWritten();
        });
      } finally {
        onWritten();
      }
      this.trace('init-done', { track: u.track_id });
      this.initBytesDone += body.byteLength;
      this.emitProgress();
    });
    const all = Promise.all(answered).then(() => undefined);
    this.initsPending = all;
    all.catch((e: unknown) => {
      if (!this.abort.signal.aborted) this.fatal ??= e;
      this.kick();
    });
    // a failure before the bytes are written surfaces here; later ones through run()
    await Promise.race([Promise.all(written), all]);
  }


  private idleReason(): string {
    const leased = this.serverStates.filter((s, i) => s === 'assigned' && this.states[i] !== 'uploaded').length;
    const checking = this.serverStates.filter((s) => s === 'uploaded').length;
    if (leased > 0) {
      return `Waiting for ${leased} part${leased > 1 ? 's' : ''} still reserved by an earlier upload of this file (for example before a reload); the server releases them within a couple of minutes.`;
    }
    if (checking > 0) return `Waiting for the server to check the last ${checking} part${checking > 1 ? 's' : ''}…`;
    return 'Waiting for the server…';
  }

  private trackIndex(trackId: number): number {
    const i = this.analysis.tracks.findIndex((t) => t.id === trackId);
    if (i < 0) throw new Error(`server assigned an upload for unknown track ${trackId}`);
    return i;
  }

  // ---- the link ---------------------------------------------------------------------------

  /** wake the main loop (a PUT ended, priorities changed, pause…) */
  private kick(): void {
    this.kicked = true;
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async waitForKick(ms: number): Promise<void> {
    if (this.kicked) {
      this.kicked = false;
      return;
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    this.wake = null;
    this.kicked = false;
  }

  /** progress moved: a PUT may have entered its tail (the next may start) */
  private onProgressTick(): void {
    const now = performance.now();
    if (now - this.lastRateTrace > 1000) {
      this.lastRateTrace = now;
      const rate = this.meter.rate();
      if (rate !== null) this.trace('rate', { bps: Math.round(rate * 8) });
    }
    if (this.running) this.schedule();
  }

  private isDone(slot: number): boolean {
    const s = this.states[slot];
    return s === 'uploaded' || s === 'published';
  }

  private isPriority(rank: number): boolean {
    return rank !== NATURAL_RANK && rank !== NEXT_RANK;
  }

  private rankOf(slot: number, serverSaysPriority = false): number {
    return this.prio.rank.get(slot) ?? (serverSaysPriority ? UNLISTED_PRIORITY_RANK : NATURAL_RANK);
  }

  /** bytes the PUT has handed to the network (written to the socket) */
  private written(p: Put): number {
    return p.loaded.reduce((n, x) => n + x, 0);
  }

  /**
   * The link's rate for delivery estimates: from whole PUTs that had the link alone (start →
   * response, so bytes hidden in send buffers are counted when they really crossed); before there
   * is one, from progress events.
   */
  private deliveryRate(): number | null {
    const now = performance.now();
    while (this.solo.length && now - this.solo[0]!.at > SOLO_MAX_AGE_MS) this.solo.shift();
    if (this.solo.length) {
      const bytes = this.solo.reduce((n, x) => n + x.bytes, 0);
      const ms = this.solo.reduce((n, x) => n + x.ms, 0);
      if (ms > 0) return (bytes * 1000) / ms;
    }
    return this.meter.rate();
  }

  /**
   * Bytes of the PUT that have crossed the link, estimated. Upload progress counts bytes written to
   * the socket; on a real uplink the OS send buffer and the modem's queue hold hundreds of KB more
   * than has crossed, so progress alone says a PUT is nearly done long before it is. The link cannot
   * have delivered more than its rate × the time the PUT has been on it.
   */
  private delivered(p: Put): number {
    const written = this.written(p);
    const rate = this.deliveryRate();
    if (!rate) return written;
    return Math.min(written, (rate * (performance.now() - p.startedAt)) / 1000);
  }

  private remainingBytes(p: Put): number {
    return p.bytes - this.delivered(p);
  }

  /** seconds of link time the PUT still needs, at the measured rate (Infinity if unmeasured) */
  private remainingSeconds(p: Put): number {
    if (p.phase === 'reporting') return 0;
    if (p.phase !== 'sending') return Number.POSITIVE_INFINITY;
    const rate = this.deliveryRate();
    return rate ? this.remainingBytes(p) / rate : Number.POSITIVE_INFINITY;
  }

  /** the PUT's bytes have (nearly) all crossed the link: the next natural-order PUT may start */
  private inTail(p: Put): boolean {
    if (p.phase === 'reporting') return true;
    if (p.phase !== 'sending') return false;
    const rate = this.deliveryRate() ?? 0;
    return this.remainingBytes(p) <= Math.max(TAIL_MIN_BYTES, rate * TAIL_SECONDS);
  }

  /**
   * A PUT got its response: note its time on the link, and if it had the link (nearly) alone, its
   * whole-PUT rate. Returns the ms it shared the link with other PUTs.
   */
  private recordSending(p: Put): number {
    const end = performance.now();
    let sharedMs = 0;
    const others = [
      ...this.sendingIntervals,
      ...[...this.puts.values()].filter((o) => o !== p && o.phase === 'sending').map((o) => ({ start: o.startedAt, end })),
      ...[...this.sides].filter((f) => f.phase === 'sending').map((f) => ({ start: f.startedAt, end })),
    ];
    for (const o of others) sharedMs += Math.max(0, Math.min(end, o.end) - Math.max(p.startedAt, o.start));
    const ms = end - p.startedAt;
    if (ms > 0 && sharedMs <= SOLO_MAX_SHARED * ms) {
      // while shared, it got about half the link
      this.solo.push({ bytes: p.bytes, ms: ms - sharedMs / 2, at: end });
      if (this.solo.length > SOLO_PUTS_KEPT) this.solo.shift();
    }
    this.sendingIntervals.push({ start: p.startedAt, end });
    if (this.sendingIntervals.length > 8) this.sendingIntervals.shift();
    return sharedMs;
  }

  /** No new PUT starts until the returned release is called (by the report's answer) or REPORT_HOLD_MS pass. */
  private holdLinkForReport(): () => void {
    this.reportHolds++;
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      clearTimeout(timer);
      this.reportHolds--;
      if (this.running) this.schedule();
    };
    const timer = setTimeout(release, REPORT_HOLD_MS);
    return release;
  }

  /** the PUT has nothing left to write: aborting it would not free the link any sooner */
  private allWritten(p: Put): boolean {
    if (p.phase === 'reporting') return true;
    return p.phase === 'sending' && p.bytes - this.written(p) <= WRITTEN_SLACK_BYTES;
  }

  /** the URLs of a kept assignment are still usable */
  private usable(a: Assignment): boolean {
    const now = Date.now();
    return a.uploads.every((u) => {
      const t = Date.parse(u.expires_at);
      return !Number.isFinite(t) || t - now > URL_MARGIN_MS;
    });
  }

  /** Take leases (from POST next or the priority feed) into hand. */
  private hold(list: readonly Assignment[]): void {
    for (const a of list) {
      if (a.slot < 0 || a.slot >= this.states.length) {
        this.fatal ??= new Error(`server assigned slot ${a.slot}, outside the plan`);
        continue;
      }
      // A lease for a slot this tab thinks uploaded means the server wants it again (the
      // worker refused those bytes, or the report was lost): the lease, not a status poll, says so.
      if (this.puts.has(a.slot) || this.states[a.slot] === 'published') continue;
      // its report is on its way (or waiting): that settles it, whatever this lease says
      if (this.pendingReports.some((r) => r.slot === a.slot) || [...this.sentReports].some((r) => r.slot === a.slot)) continue;
      this.held.set(a.slot, a); // the fresher lease and URLs win
      if (a.priority && !this.prio.rank.has(a.slot)) this.prio.rank.set(a.slot, UNLISTED_PRIORITY_RANK);
      this.setState(a.slot, 'assigned');
    }
  }

  /** The slot that should go on the link next, by rank; null if there is none to send. */
  private candidate(): Candidate | null {
    const naturalDue = performance.now() - this.lastNaturalAt >= (this.opts.naturalEveryMs ?? 20_000);
    // a window slot asked for and not obtained (leased elsewhere) is skipped until the windows change
    const prio = this.prio.slots.filter((s) => !this.isDone(s) && !this.puts.has(s) && (this.held.has(s) || !this.asked.has(s)));
    const natural = (): Candidate | null => {
      let best: number | null = null;
      for (const slot of this.held.keys()) if (!this.prio.rank.has(slot) && !this.puts.has(slot) && (best === null || slot < best)) best = slot;
      return best === null ? null : { slot: best, rank: NATURAL_RANK, a: this.held.get(best)! };
    };
    if (prio.length) {
      // starvation guard: viewers kept natural order off the link for naturalEveryMs
      if (naturalDue && ![...this.puts.values()].some((p) => p.rank === NEXT_RANK)) {
        const n = natural();
        if (n) return { ...n, rank: NEXT_RANK };
      }
      const slot = prio[0]!;
      return { slot, rank: this.prio.rank.get(slot)!, a: this.held.get(slot) ?? null };
    }
    // slots the server marked priority that the feed has not listed
    let unlisted: number | null = null;
    for (const [slot, a] of this.held) if (a.priority && !this.puts.has(slot) && this.prio.rank.get(slot) === UNLISTED_PRIORITY_RANK && (unlisted === null || slot < unlisted)) unlisted = slot;
    if (unlisted !== null) return { slot: unlisted, rank: UNLISTED_PRIORITY_RANK, a: this.held.get(unlisted)! };
    return natural();
  }

  /**
   * May the next side upload start now (`c`: the slot that goes next)? One at a time; never while a
   * part a viewer waits for is next, on the link, or getting its report out. Otherwise at once:
   * beside natural-order PUTs, part 0's included (part 0 keeps the link to itself against other
   * parts until a viewer asks for it, as the first viewer's part; a sprite is tens of KB), so that
   * the previews are public long before part 0 completes on a slow link.
   */
  private sideMayStart(c: Candidate | null): boolean {
    if (this.sideQueue.length === 0 || this.sides.size > 0) return false;
    // a viewer's part (or, while viewers wait, the starvation guard's natural one) goes next
    if (c && c.rank !== NATURAL_RANK) return false;
    if (this.reportHolds > 0) return false;
    for (const p of this.puts.values()) if (p.phase !== 'reporting' && this.isPriority(p.rank)) return false;
    return true;
  }

  /**
   * Starvation guard for the side uploads, like natural order's: viewers that keep a part they wait
   * for on the link all the time would hold the previews back for good, so one goes (and keeps the
   * link beside their parts: a sprite is tens of KB) after naturalEveryMs of waiting.
   */
  private sideOverdue(): boolean {
    if (this.sideQueue.length === 0 || this.sides.size > 0 || this.reportHolds > 0) return false;
    return performance.now() - this.sideWaitingSince >= (this.opts.naturalEveryMs ?? 20_000);
  }

  /** May a PUT of `slot` at `rank` start now, given what is on the link? */
  private linkAccepts(rank: number, slot: number): boolean {
    // a report a viewer waits for goes out first, except before a viewer's new playhead part
    if (this.reportHolds > 0 && rank !== 0) return false;
    // a side upload (a few dozen KB) is a head for natural order only; part 0, what the first
    // viewer waits for, never waits for one (the sprite made before it goes on the link goes beside it)
    if (this.sides.size > 0 && !this.isPriority(rank) && slot !== 0) return false;
    const onLink = [...this.puts.values()].filter((p) => p.phase !== 'reporting');
    if (onLink.length === 0) return true;
    // an exclusive PUT is joined only by a viewer's playhead part, and only once it has nothing left to write
    if (onLink.some((p) => p.exclusive && !(rank === 0 && this.allWritten(p)))) return false;
    // a viewer's playhead part joins PUTs that have nothing left to write (their buffered bytes
    // drain either way); the rest of a window, like natural order, waits until the bytes on the link
    // have crossed it: a PUT started beside an all-written one fills a second send buffer, which the
    // part of a viewer's next seek would have to wait behind
    const priority = this.isPriority(rank);
    const heads = onLink.filter((p) => !this.inTail(p) && !(rank === 0 && this.allWritten(p))).length;
    return heads < (priority ? 1 : this.streams);
  }

  /**
   * A priority slot is waiting: PUTs of lower rank whose measured time left is more than
   * preemptKeepMs give the link up (natural order always; priority ones only to a playhead slot).
   */
  private preemptFor(rank: number): void {
    const keepSecs = (this.opts.preemptKeepMs ?? 250) / 1000;
    const yielded: number[] = [];
    for (const p of this.puts.values()) {
      if (p.yielded || p.phase === 'reporting') continue;
      // the starvation guard's part gives way only to a viewer's playhead part
      const lower = p.rank === NATURAL_RANK || (rank === 0 && (p.rank === NEXT_RANK || p.rank > 0));
      if (!lower || this.allWritten(p) || this.remainingSeconds(p) <= keepSecs) continue;
      p.yielded = true;
      yielded.push(p.a.slot);
      p.ctrl.abort(new DOMException('yielding the link to a priority slot', 'AbortError'));
    }
    this.yieldSides(rank);
    if (yielded.length) {
      this.trace('yield', { slots: yielded, for: rank });
      this.cb.onLog?.(`yielding the link to priority slots: slot(s) ${yielded.join(', ')} will be sent again after them`);
    }
  }

  /**
   * A part a viewer waits for is next or on the link: a side upload on the link gives way like a
   * natural-order PUT (unless it has nothing left to write or finishes within preemptKeepMs; most
   * sprites are written at once) and is sent again later. One waiting for the pacer is overtaken there.
   */
  private yieldSides(rank: number): void {
    const keepSecs = (this.opts.preemptKeepMs ?? 250) / 1000;
    const rate = this.deliveryRate();
    for (const f of this.sides) {
      if (f.yielded || f.guard || f.phase !== 'sending') continue;
      const size = f.s.body.size;
      if (size - f.loaded <= WRITTEN_SLACK_BYTES) continue;
      const delivered = rate ? Math.min(f.loaded, (rate * (performance.now() - f.startedAt)) / 1000) : f.loaded;
      if (rate && (size - delivered) / rate <= keepSecs) continue;
      f.yielded = true;
      this.trace('side-abort', { label: f.s.label, loaded: f.loaded, bytes: size, for: rank });
      this.cb.onLog?.(`${f.s.label}: yielding the link to a part a viewer waits for; it goes again after it`);
      f.ctrl.abort(new DOMException('yielding the link to a priority slot', 'AbortError'));
    }
  }

  /** Decide what goes on the link now. Synchronous; leases are fetched in the background. */
  private schedule(): void {
    if (!this.running || this.pausing || this.fatal || this.abort.signal.aborted) return;
    if (this.sides.size) {
      // a part a viewer waits for is already on the link (part 0 sent before the viewer asked for it)
      let top: number | null = null;
      for (const p of this.puts.values()) if (p.phase !== 'reporting' && this.isPriority(p.rank) && (top === null || p.rank < top)) top = p.rank;
      if (top !== null) this.yieldSides(top);
    }
    for (let guard = 0; guard < 16; guard++) {
      const c = this.candidate();
      const sideGuard = this.sideOverdue();
      if (sideGuard || this.sideMayStart(c)) {
        this.startSide(this.sideQueue.shift()!, sideGuard);
        continue;
      }
      if (!c) break;
      if (this.isPriority(c.rank)) this.preemptFor(c.rank);
      if (!c.a) {
        this.requestLeases(c.slot);
        break;
      }
      if (!this.usable(c.a)) {
        this.held.delete(c.slot);
        this.cb.onLog?.(`slot ${c.slot}: kept upload URLs expired; it will be reassigned`);
        this.setState(c.slot, 'pending');
        continue;
      }
      if (!this.linkAccepts(c.rank, c.slot)) break;
      this.held.delete(c.slot);
      this.startPut(c.a, c.rank);
    }
    this.prefetch();
    this.topUpNatural();
    this.flushReports();
  }

  /** Keep natural-order leases ready so the next PUT can start the moment the link allows. */
  private topUpNatural(): void {
    if (this.asking || this.serverComplete || this.pausing || performance.now() < this.naturalDryUntil) return;
    const want = this.naturalWanted();
    if (want > 0) void this.fetchLeases(want, 'natural');
  }

  /** natural-order leases to ask for: one ahead of each stream, less those in hand or on the link (≤ 16) */
  private naturalWanted(): number {
    let ready = 0;
    for (const slot of this.held.keys()) if (!this.prio.rank.has(slot)) ready++;
    const onLink = [...this.puts.values()].filter((p) => p.phase !== 'reporting' && !this.isPriority(p.rank)).length;
    return Math.min(16, this.streams + NATURAL_AHEAD - ready - onLink);
  }

  private requestLeases(slot: number): void {
    if (this.asking || this.asked.has(slot)) return;
    const missing = this.prio.slots.filter((s) => !this.isDone(s) && !this.puts.has(s) && !this.held.has(s));
    for (const s of missing) this.asked.add(s);
    void this.fetchLeases(Math.min(16, Math.max(1, missing.length)), 'priority');
  }

  /**
   * POST next for `max` leases, carrying the waiting reports (every call does: that is the saving).
   * `flush`: why the call is made for the reports (traced), if it is.
   */
  private async fetchLeases(max: number, reason: 'priority' | 'natural', flush?: string): Promise<void> {
    if (this.asking) return;
    this.asking = true;
    // the trigger that makes these reports go now, if one does (else they just ride along)
    const due = this.flushReason();
    // the same list on every retry (a 503): a repeated report is idempotent
    const reports = this.pendingReports.splice(0, NEXT_MAX_REPORTS);
    for (const r of reports) this.sentReports.add(r);
    const uploaded = reports.map((r) => r.slot);
    try {
      if (reports.length) this.trace('reports', { count: reports.length, reason: flush ?? due ?? reason, via: 'next', slots: uploaded });
      this.trace('next-request', { reason, max, ...(reports.length ? { uploaded } : {}) });
      const r = await this.api.next(this.videoId, this.secret, max, this.abort.signal, uploaded);
      this.trace('next-response', { reason, slots: r.assignments.map((a) => a.slot) });
      // before the leases: a refused part's lease goes back into hand (the answer leases none of these)
      if (reports.length) this.batchAnswered(reports, r.reports);
      if (r.complete) this.serverComplete = true;
      // nothing left to hand out right now (leased elsewhere, being checked): don't ask again at once
      if (r.assignments.length === 0) this.naturalDryUntil = performance.now() + 1000;
      this.hold(r.assignments);
    } catch (e) {
      if (!this.abort.signal.aborted) {
        // still unreported: the run's end reports them by the single route
        this.pendingReports.unshift(...reports);
        this.fatal ??= e;
      }
    } finally {
      for (const r of reports) this.sentReports.delete(r);
      this.asking = false;
      this.kick();
      if (this.running) this.schedule();
      else if (!this.abort.signal.aborted && !this.fatal) this.prefetch(); // part 0 is built while the init segments go up
    }
  }

  /** Build a slot's segments (once; held until sent). */
  private build(slot: number, a: Assignment): Promise<Blob[]> {
    let b = this.built.get(slot);
    if (!b) {
      const tracks = a.uploads.map((u) => this.trackIndex(u.track_id));
      b = this.generation.then(() => this.segmenter.buildSlot(slot, tracks));
      this.generation = b.catch(() => undefined);
      b.catch(() => undefined);
      this.built.set(slot, b);
    }
    return b;
  }

  /** The next natural-order slot is built while the current one is on the link. */
  private prefetch(): void {
    for (const slot of this.built.keys()) if (!this.held.has(slot) && !this.puts.has(slot)) this.built.delete(slot);
    if (this.built.size >= this.puts.size + 1) return;
    let next: number | null = null;
    for (const slot of this.held.keys()) if (!this.built.has(slot) && (next === null || slot < next)) next = slot;
    if (next !== null) this.build(next, this.held.get(next)!);
  }

  private startPut(a: Assignment, rank: number): void {
    const slot = a.slot;
    const bytes = a.uploads.reduce((n, u) => n + (this.plan.slots[slot]!.tracks[this.trackIndex(u.track_id)]?.size ?? 0), 0);
    const p: Put = {
      a,
      rank,
      ctrl: new AbortController(),
      phase: 'building',
      bytes,
      loaded: a.uploads.map(() => 0),
      // Part 0 is what the first viewer waits for, often before their priority has reached this tab
      // (a viewer opening the link as it is shown loads the page and the manifest first: in the
      // shaped-link benchmark the priority for part 0 arrives about when part 0's PUT is done), so no
      // other part joins it and its report goes out on an empty uplink, whether or not a viewer has
      // asked yet. Side uploads (a few dozen KB) go by the rank: beside it until a viewer asks for it.
      exclusive: slot === 0 || rank === 0,
      yielded: false,
      startedAt: performance.now(),
    };
    const onStop = (): void => p.ctrl.abort(this.abort.signal.reason);
    this.abort.signal.addEventListener('abort', onStop, { once: true });
    this.puts.set(slot, p);
    if (!this.isPriority(rank)) {
      this.lastNaturalAt = performance.now();
      this.probeCountPart();
    }
    void this.sendSlot(p)
      .catch((e: unknown) => this.putFailed(p, e))
      .finally(() => {
        this.abort.signal.removeEventListener('abort', onStop);
        if (this.puts.get(slot) === p) this.puts.delete(slot);
        this.built.delete(slot);
        this.kick();
        if (this.running) this.schedule();
      });
  }

  private startSide(s: SideUpload, guard = false): void {
    const f: SideFlight = { s, guard, ctrl: new AbortController(), phase: 'pacing', loaded: 0, startedAt: performance.now(), yielded: false };
    this.sideWaitingSince = performance.now();
    const onStop = (): void => f.ctrl.abort(this.abort.signal.reason);
    this.abort.signal.addEventListener('abort', onStop, { once: true });
    this.sides.add(f);
    const started = performance.now();
    const beside = [...this.puts.values()].filter((p) => p.phase !== 'reporting').map((p) => p.a.slot);
    this.trace('side-start', { label: s.label, bytes: s.body.size, beside, ...(guard ? { guard } : {}) });
    void Promise.resolve(this.opts.pacer?.take(s.body.size, f.ctrl.signal, NATURAL_RANK))
      .then(() => {
        f.phase = 'sending';
        f.startedAt = performance.now();
        return this.putMeasured(s.upload, s.body, f.ctrl.signal, (loaded) => {
          f.loaded = loaded;
        });
      })
      .then(() => {
        f.phase = 'reporting';
        this.sendingIntervals.push({ start: f.startedAt, end: performance.now() });
        if (this.sendingIntervals.length > 8) this.sendingIntervals.shift();
        return s.published?.();
      })
      .then(() => this.trace('side-done', { label: s.label, ms: Math.round(performance.now() - started) }))
      .catch((e: unknown) => {
        if (this.abort.signal.aborted) return;
        // gave the link to a part a viewer waits for: first in line again (same presigned URL)
        if (f.yielded) this.sideQueue.unshift(s);
        // an extra never stops the upload: the player does without the missing preview
        else this.cb.onLog?.(`${s.label}: ${describe(e)}`);
      })
      .finally(() => {
        this.abort.signal.removeEventListener('abort', onStop);
        this.sides.delete(f);
        this.kick();
        if (this.running) this.schedule();
      });
  }

  /** Starts making the side uploads (once per uploader). */
  private startSideProducer(): void {
    if (this.sideProducer || !this.opts.sideUploads) return;
    this.sideProducer = this.opts
      .sideUploads()
      .then((list) => {
        this.sideQueue.push(...list);
        this.sideWaitingSince = performance.now();
        this.trace('side-ready', { count: list.length });
      })
      .catch((e: unknown) => {
        if (!this.abort.signal.aborted) this.cb.onLog?.(`previews: ${describe(e)}`);
      })
      .finally(() => {
        this.kick();
        if (this.running) this.schedule();
      });
  }

  /** the side uploads are made and sent (they never fail the upload) */
  private sideSettled(): boolean {
    return this.sideQueue.length === 0 && this.sides.size === 0;
  }

  private putFailed(p: Put, e: unknown): void {
    const slot = p.a.slot;
    if (this.abort.signal.aborted) return;
    if (p.yielded) {
      this.sendingIntervals.push({ start: p.startedAt, end: performance.now() });
      if (this.sendingIntervals.length > 8) this.sendingIntervals.shift();
      this.trace('put-abort', { slot, loaded: this.written(p), delivered: Math.round(this.delivered(p)), bytes: p.bytes });
      if (!this.isDone(slot)) {
        this.held.set(slot, p.a);
        this.setState(slot, 'assigned');
      }
      return;
    }
    this.built.delete(slot);
    if (e instanceof ApiError && !isTransient(e) && e.status === 403) {
      // presigned URL refused (expired?): the lease runs out and the server hands the slot out again
      this.cb.onLog?.(`slot ${slot}: ${e.message}; it will be reassigned`);
      this.setState(slot, 'pending');
      return;
    }
    this.fatal ??= e;
    this.kick();
  }

  private async sendSlot(p: Put): Promise<void> {
    const { a, ctrl } = p;
    const slot = a.slot;
    const signal = ctrl.signal;
    const tracks = a.uploads.map((u) => this.trackIndex(u.track_id));
    const planned = this.plan.slots[slot]!;
    this.setState(slot, 'generating');
    this.trace('put-admitted', { slot, rank: Number.isFinite(p.rank) ? p.rank : null });
    const bodies = await this.build(slot, a);
    this.trace('built', { slot });
    signal.throwIfAborted();
    bodies.forEach((b, i) => {
      if (b.size !== planned.tracks[tracks[i]!]?.size) throw new Error(`slot ${slot}: built ${b.size} bytes for track #${tracks[i]}, planned ${planned.tracks[tracks[i]!]?.size}`);
    });
    if (this.opts.pacer?.limited) {
      p.phase = 'pacing';
      await this.opts.pacer.take(p.bytes, signal, this.isPriority(p.rank) ? p.rank : NATURAL_RANK);
    }
    this.setState(slot, 'uploading');
    p.phase = 'sending';
    p.startedAt = performance.now();
    this.trace('put-start', { slot, bytes: p.bytes, rank: Number.isFinite(p.rank) ? p.rank : null, exclusive: p.exclusive, streams: this.streams });
    await Promise.all(
      a.uploads.map((u, i) =>
        this.putMeasured(u, bodies[i]!, signal, (loaded) => {
          p.loaded[i] = loaded;
        }),
      ),
    );
    p.phase = 'reporting';
    this.built.delete(slot);
    const sharedMs = this.recordSending(p);
    this.trace('put-done', { slot, bytes: p.bytes, ms: Math.round(performance.now() - p.startedAt), sharedMs: Math.round(sharedMs) });
    if (!this.reportAtOnce(p)) {
      // nobody watches: the report rides on a coming `next` call (startPut's schedule() decides when)
      this.pendingReports.push({ slot, a, since: performance.now() });
      this.setState(slot, 'uploaded');
      this.trace('report-pending', { slot, pending: this.pendingReports.length });
      this.cb.onLog?.(`slot ${slot} uploaded (report batched)`);
      return;
    }
    // A part a viewer waits for (part 0, a playhead part): its report goes out on an empty uplink
    // (a new PUT would queue it behind its first bytes in the modem); otherwise the next PUT starts
    // before the report goes out.
    const releaseLink = p.exclusive ? this.holdLinkForReport() : null;
    if (!releaseLink) this.schedule();
    try {
      await this.reportNow(slot, a, this.retryOpts());
    } finally {
      releaseLink?.();
    }
    this.cb.onLog?.(`slot ${slot} uploaded${this.isPriority(p.rank) ? ' (priority)' : ''}`);
  }

  // ---- reports -----------------------------------------------------------------------------

  /**
   * Report at once (single route) a part a viewer waits for, or any part while someone watches (or
   * before the feed has said nobody does): its report is what publishes it or queues its check.
   */
  private reportAtOnce(p: Put): boolean {
    const viewerWaits = p.a.priority || this.isPriority(p.rank) || this.prio.rank.has(p.a.slot);
    return viewerWaits || !this.unwatched || this.pausing || !this.running;
  }

  /** The single route (POST …/slots/{n}/uploaded); its 409 refusals are answers like a batch entry's `error`. */
  private async reportNow(slot: number, a: Assignment, retry: RetryOptions): Promise<void> {
    let answer: ReportAnswer;
    try {
      const r = await withRetry(() => this.api.reportUploaded(this.videoId, this.secret, slot, retry.signal), retry);
      answer = { queue: r?.queue as SlotReport['queue'], published: r?.published === true };
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 409 && (e.code === 'already_published' || REFUSED_RESEND.has(e.code)))) throw e;
      answer = { error: e.code, message: e.message };
    }
    this.reportAnswered(slot, a, answer, 'route');
  }

  /** A report's answer, whichever way it went: the part is uploaded, published, or must be sent again. */
  private reportAnswered(slot: number, a: Assignment, r: ReportAnswer, via: 'route' | 'next'): void {
    if (r.error && r.error !== 'already_published') {
      this.reportRefused(slot, a, r.error, r.message ?? r.error);
      return;
    }
    this.refusals.delete(slot);
    const published = r.published === true || r.error === 'already_published';
    this.trace('reported', { slot, queue: r.queue, published, via, ...(r.error ? { error: r.error } : {}) });
    // a part a viewer waits for is checked and published by its report
    this.setState(slot, published ? 'published' : 'uploaded');
  }

  /**
   * The server did not find the part's objects with their planned sizes (as a 409 of the single
   * route): the lease stays ours, so the part goes again with it, then is reported again.
   */
  private reportRefused(slot: number, a: Assignment, code: string, message: string): void {
    const n = (this.refusals.get(slot) ?? 0) + 1;
    this.refusals.set(slot, n);
    this.trace('report-refused', { slot, code, n });
    if (n >= MAX_REFUSALS) {
      this.fatal ??= new ApiError(409, code, `slot ${slot}: ${message} (refused ${n} times)`);
      this.kick();
      return;
    }
    this.cb.onLog?.(`slot ${slot}: ${message}; sending it again`);
    // (a single-route report's PUT is still in `puts`: the slot is sent again once it has left)
    this.held.set(slot, a); // expired URLs are dropped by schedule(): the server hands the slot out again
    this.setState(slot, 'assigned');
    this.kick();
    if (this.running) this.schedule();
  }

  /** Why the waiting reports should go now (null: they wait for the next `next` call). */
  private flushReason(): string | null {
    if (this.pendingReports.length === 0) return null;
    if (!this.unwatched) return 'watched';
    if (this.pendingReports.length >= REPORT_BATCH) return 'full';
    if (performance.now() - this.pendingReports[0]!.since >= (this.opts.reportWaitMs ?? 30_000)) return 'waited';
    // nothing on the link and no lease in hand: no `next` call is coming for a while (the end of the run)
    if (this.held.size === 0 && [...this.puts.values()].every((p) => p.phase === 'reporting')) return 'idle';
    return null;
  }

  /**
   * Flushes the waiting reports when flushReason says so: with a `next` call (leases as usual), or,
   * while one is in flight (it may be a while in 503 retries) and someone now watches or they have
   * waited long enough, through the single route. Otherwise they go with the call after it.
   */
  private flushReports(): void {
    const reason = this.flushReason();
    if (!reason) return;
    if (!this.asking) void this.fetchLeases(Math.max(1, this.naturalWanted()), 'natural', reason);
    else if (reason === 'watched' || reason === 'waited') void this.reportByRoute(this.pendingReports.splice(0), reason);
  }

  /**
   * Reports through the single route, in parallel (the run pauses or ends, or a server that did not
   * answer a batched report). Failures end the upload, as a report's always has.
   */
  private async reportByRoute(list: PendingReport[], reason: string, retry: RetryOptions = this.retryOpts()): Promise<void> {
    if (list.length === 0) return;
    this.trace('reports', { count: list.length, reason, via: 'route', slots: list.map((r) => r.slot) });
    for (const r of list) this.sentReports.add(r);
    const results = await Promise.allSettled(list.map((r) => this.reportNow(r.slot, r.a, retry).finally(() => this.sentReports.delete(r))));
    for (const r of results) if (r.status === 'rejected' && !this.abort.signal.aborted) this.fatal ??= r.reason;
    this.kick();
  }

  /** A `next` call's `reports`: each entry as the single route's answer for its slot. */
  private batchAnswered(sent: readonly PendingReport[], entries: readonly SlotReport[] | undefined): void {
    const bySlot = new Map((entries ?? []).map((e) => [e.slot, e]));
    const unanswered: PendingReport[] = [];
    for (const r of sent) {
      const e = bySlot.get(r.slot);
      if (e) this.reportAnswered(r.slot, r.a, e, 'next');
      else unanswered.push(r);
    }
    // a server that does not know batched reports ignores the list: those go by the single route
    void this.reportByRoute(unanswered, 'unanswered');
  }

  /** Nobody watches while the feed's answers say so and name no priority slot. */
  private setUnwatched(unwatched: boolean): void {
    if (unwatched === this.unwatched) return;
    this.unwatched = unwatched;
    this.trace('watched', { watched: !unwatched });
    // turned watched: the waiting reports go now
    if (!unwatched && this.running) this.schedule();
  }

  // ---- how many streams the link needs -----------------------------------------------------

  /** Natural-order parts drive the probe: one more stream is tried now and then, kept only if it pays. */
  private probeCountPart(): void {
    const max = Math.max(1, Math.min(8, this.opts.parallel));
    const rate = this.meter.rate();
    if (this.probe) {
      if (--this.probe.partsLeft > 0) return;
      const got = this.meter.rateSince(this.probe.mark);
      if (this.meter.mark().busyMs - this.probe.mark.busyMs < PROBE_MIN_MS) return; // too short to tell yet
      const keep = got !== null && got >= this.probe.baseline * PROBE_GAIN;
      this.trace('probe', { streams: this.probe.streams, baselineBps: Math.round(this.probe.baseline * 8), gotBps: got === null ? null : Math.round(got * 8), kept: keep });
      if (keep) {
        this.probeInterval = PROBE_FIRST_AFTER_PARTS;
      } else {
        this.streams = this.probe.streams - 1;
        this.probeInterval = Math.min(PROBE_MAX_INTERVAL_PARTS, this.probeInterval * 2);
      }
      this.trace('streams', { n: this.streams });
      this.probe = null;
      this.partsSinceProbe = 0;
      return;
    }
    if (++this.partsSinceProbe < this.probeInterval || this.streams >= max || rate === null || this.prio.slots.length) return;
    this.streams++;
    this.probe = { streams: this.streams, baseline: rate, mark: this.meter.mark(), partsLeft: 2 * this.streams + 1 };
    this.trace('streams', { n: this.streams, probe: true });
  }

  // ---- priorities --------------------------------------------------------------------------

  private onPriority(r: Omit<PriorityResponse, 'version'> & { version: number | null }): void {
    if (r.assignments?.length) {
      this.trace('lease', { via: 'priority', slots: r.assignments.map((a) => a.slot) });
      this.hold(r.assignments);
    }
    const slots = (r.priority_slots ?? []).filter((s) => Number.isInteger(s) && s >= 0 && s < this.states.length);
    const sameSlots = slots.length === this.prio.slots.length && slots.every((s, i) => s === this.prio.slots[i]);
    const versionChanged = r.version !== this.prio.version;
    if (r.complete) this.serverComplete = true;
    if (!versionChanged && sameSlots) {
      if (r.assignments?.length) this.schedule();
      return;
    }
    if (versionChanged || r.version === null) this.asked.clear();
    this.prio = { version: r.version, slots, rank: new Map(slots.map((s, i) => [s, i])) };
    for (const p of this.puts.values()) {
      if (p.rank === NEXT_RANK) continue; // the starvation guard's slot keeps its turn
      p.rank = this.rankOf(p.a.slot, this.isPriority(p.rank));
      // a viewer now waits on this one: nothing joins it (and a part no viewer waits on first any more
      // stops keeping the link to itself; part 0 keeps it against other parts, see startPut); side
      // uploads go by the rank (sideMayStart), so from now on none starts beside a part it ranks
      p.exclusive = p.a.slot === 0 || p.rank === 0;
    }
    if (slots.length && this.probe) {
      // viewers are waiting: no probing now
      this.streams = this.probe.streams - 1;
      this.probe = null;
    }
    this.trace('priority', { version: r.version, slots: slots.slice(0, 16) });
    if (slots.length) this.cb.onLog?.(`viewers need slot(s) ${slots.slice(0, 8).join(', ')} first`);
    this.schedule();
    this.kick();
  }

  /**
   * The priority feed. Each answer either offers a wake-up URL (nobody watches: wait on it, an SQS
   * long poll that comes back when a viewer opens the watch page or seeks, then ask again with no
   * hold) or not (hold the next request open until the viewers' windows change). At most one feed
   * request per wait either way, and none after a wake-up that ran out (nothing rang), except every
   * WAKE_ASK_EVERY-th in a row: the same URL is waited on again. Wake-up URLs that keep coming back
   * at once with nothing new are given up for the rest of the run.
   */
  private async priorityLoop(signal: AbortSignal): Promise<void> {
    let failures = 0;
    const holdMs = this.opts.priorityWaitMs ?? 20_000;
    /** the last answer's wake-up URL, used once */
    let wakeUrl: string | null = null;
    /** stray wake-ups in a row; wake-up URLs given up */
    let strays = 0;
    let wakeOff = false;
    /** wake-ups in a row that ran out since the last feed answer */
    let runOuts = 0;
    const runOutMs = this.opts.wakeRunOutMs ?? WAKE_RUN_OUT_MS;
    /** the last answer's `watched` (a page opening rings the wake-up without a new version) */
    let lastWatched: boolean | undefined;
    while (!signal.aborted) {
      try {
        let waitMs = holdMs;
        let woke: { ms: number; failed: unknown; before: number | null; watchedBefore: boolean | undefined } | null = null;
        if (wakeUrl !== null && !wakeOff) {
          const url: string = wakeUrl;
          wakeUrl = null;
          const before = this.prio.version;
          // `again`: the run-outs in a row this wait follows on the same URL (no feed request between)
          this.trace('feed-wait', { mode: 'wake', ...(runOuts > 0 ? { again: runOuts } : {}) });
          woke = { ...(await this.waitForWake(url, signal)), before, watchedBefore: lastWatched };
          if (woke.failed === null && woke.ms >= runOutMs && ++runOuts < WAKE_ASK_EVERY) {
            // nothing rang: wait again on the same URL without asking the API (not a stray)
            ({ strays, wakeOff } = this.wakeVerdict(woke, false, strays, wakeOff, { ranOut: true, asked: false }));
            wakeUrl = url;
            continue;
          }
          waitMs = 0;
        } else {
          wakeUrl = null;
          this.trace('feed-wait', { mode: 'hold', ms: waitMs });
        }
        let r: PriorityResponse;
        try {
          r = await this.api.priority(this.videoId, this.secret, this.prio.version, waitMs, signal, FEED_LEASE);
        } catch (e) {
          // a wake-up whose fetch failed is stray whatever the feed says (or fails to); otherwise no verdict
          if (woke && !signal.aborted) ({ strays, wakeOff } = this.wakeVerdict(woke, woke.failed !== null ? true : null, strays, wakeOff));
          throw e;
        }
        failures = 0;
        runOuts = 0;
        if (woke) {
          // nothing explains a quick return: not a new version, nor a page that opened (`watched` turned),
          // nor a viewer waiting (the answer would then offer no wake-up URL)
          const news = r.version !== woke.before || r.watched !== woke.watchedBefore || !r.wake_url;
          const stray = woke.failed !== null || (woke.ms < Math.min(WAKE_STRAY_MS, runOutMs) && !news);
          ({ strays, wakeOff } = this.wakeVerdict(woke, stray, strays, wakeOff, woke.failed === null && woke.ms >= runOutMs ? { ranOut: true, asked: true } : {}));
        }
        // the answer's own word (older servers: a wake-up URL is offered only while nobody watches)
        this.setUnwatched((r.watched !== undefined ? !r.watched : !!r.wake_url) && !r.priority_slots?.length);
        lastWatched = r.watched;
        this.onPriority(r);
        if (r.complete) return;
        wakeUrl = r.wake_url || null;
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && (e.status === 405 || (e.status === 404 && e.code !== 'unknown_video'))) {
          this.cb.onLog?.('the server has no priority feed; using the status poll instead');
          this.prioFromStatus = true;
          this.setUnwatched(false); // no word on watchers any more: report at once
          return;
        }
        if (e instanceof ApiError && !isTransient(e)) {
          this.cb.onLog?.(`priority feed: ${describe(e)}`);
          this.setUnwatched(false);
          return;
        }
        failures++;
        // a 503 under contention says when to come back (Retry-After)
        await sleep(retryDelayMs(e, Math.min(15_000, 250 * 2 ** Math.min(failures, 6))), signal).catch(() => undefined);
      }
    }
  }

  /**
   * Waits on a wake-up URL until it answers, at most `wakeMaxMs` (a wait that ran that long is a
   * wake-up like any other). `failed`: the fetch's error (network error), null if it answered.
   * Throws when `signal` aborts (pause, stop): the wait ends with it.
   */
  private async waitForWake(url: string, signal: AbortSignal): Promise<{ ms: number; failed: unknown }> {
    signal.throwIfAborted();
    const ctrl = new AbortController();
    const onAbort = (): void => ctrl.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => ctrl.abort(new DOMException('the wake-up wait ran out', 'TimeoutError')), this.opts.wakeMaxMs ?? 30_000);
    const started = performance.now();
    try {
      await this.api.wake(url, ctrl.signal);
      return { ms: performance.now() - started, failed: null };
    } catch (e) {
      signal.throwIfAborted();
      return { ms: performance.now() - started, failed: ctrl.signal.aborted ? null : (e ?? new Error('wake-up failed')) };
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Counts a wake-up (`stray` null: no verdict, the feed request after it failed) and traces it;
   * gives wake-up URLs up after WAKE_MAX_STRAYS stray ones in a row (logged once).
   */
  private wakeVerdict(
    woke: { ms: number; failed: unknown },
    stray: boolean | null,
    strays: number,
    wakeOff: boolean,
    runOut: { ranOut?: boolean; asked?: boolean } = {},
  ): { strays: number; wakeOff: boolean } {
    const count = stray === true ? strays + 1 : stray === false ? 0 : strays;
    this.trace('wake', { ms: Math.round(woke.ms), stray, ...runOut, ...(woke.failed !== null ? { failed: describe(woke.failed) } : {}) });
    if (wakeOff || count < WAKE_MAX_STRAYS) return { strays: count, wakeOff };
    this.cb.onLog?.('the wake-up URL does not work here; holding the priority poll instead');
    this.trace('wake-off', { strays: count });
    return { strays: count, wakeOff: true };
  }

  private async initsAnswered(): Promise<void> {
    if (!this.initsPending) return;
    await this.initsPending;
    this.initsPending = null;
  }

  /** Upload until the server says the video is complete (or until paused). */
  async run(): Promise<'complete' | 'paused'> {
    // a pause asked for before the loop started (the button shows with the link, while the init
    // segments still go up) is kept: run() ends at once with 'paused'
    this.running = true;
    this.serverComplete = false;
    this.unwatched = false; // until this run's first feed answer says nobody watches
    const interval = this.opts.statusIntervalMs ?? 2000;
    this.statusTimer = setInterval(() => void this.refreshStatus(), interval);
    const runCtrl = new AbortController();
    const onStop = (): void => runCtrl.abort(this.abort.signal.reason);
    this.abort.signal.addEventListener('abort', onStop, { once: true });
    void this.priorityLoop(runCtrl.signal);
    this.startSideProducer();
    this.lastNaturalAt = performance.now();
    let idle = false;
    try {
      for (;;) {
        if (this.fatal) throw this.fatal;
        this.abort.signal.throwIfAborted();
        if (this.pausing) {
          this.running = false;
          while (this.puts.size || this.sentReports.size) await this.waitForKick(1000);
          // no part stays unreported over a pause (the status shown then counts it)
          await this.reportByRoute(this.pendingReports.splice(0), 'pause');
          await this.initsAnswered();
          if (this.fatal) throw this.fatal;
          await this.refreshStatus(true);
          this.pausing = false; // the next run() (Resume) uploads again
          return 'paused';
        }
        this.schedule();
        if (this.fatal) throw this.fatal;
        if (this.serverComplete && this.puts.size === 0) {
          this.held.clear();
          // (none normally: the server is complete once every part is reported, e.g. by another uploader)
          while (this.sentReports.size) await this.waitForKick(1000);
          await this.reportByRoute(this.pendingReports.splice(0), 'end');
          // the extras made meanwhile still go up (the producer has its own time budget)
          if (this.sideProducer) await this.sideProducer;
          while (!this.sideSettled()) {
            this.schedule();
            await this.waitForKick(1000);
          }
          break;
        }
        if (this.puts.size === 0 && this.held.size === 0 && !this.asking) {
          // everything left is leased elsewhere or being validated: wait, then ask again
          this.cb.onIdle?.(this.idleReason());
          idle = true;
          await this.waitForKick(1000);
          void this.refreshStatus();
          continue;
        }
        if (idle) {
          idle = false;
          this.cb.onIdle?.(null);
        }
        await this.waitForKick(1000);
      }
      await this.initsAnswered();
      if (this.fatal) throw this.fatal;
      await this.refreshStatus(true);
      return 'complete';
    } finally {
      // a run that failed reports what it has finished, best effort (a stop has done so already)
      if (this.pendingReports.length && !this.abort.signal.aborted) await this.reportByRoute(this.pendingReports.splice(0), 'error', { maxAttempts: 3 }).catch(() => undefined);
      this.running = false;
      runCtrl.abort(new DOMException('run ended', 'AbortError'));
      this.abort.signal.removeEventListener('abort', onStop);
      if (this.statusTimer) clearInterval(this.statusTimer);
      this.statusTimer = null;
    }
  }
}

export function describe(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
