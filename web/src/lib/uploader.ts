/**
 * Upload loop: init segments first, then slots in the order the server assigns them (POST next),
 * a few in parallel. Each slot's segments are generated only when the slot is assigned, so a
 * viewer's prioritize request reorders generation as well as upload.
 *
 * Viewers' priorities reach the uploader through a long poll (GET …/priority) kept open for the
 * whole run. When it names slots this tab is not already sending, the uploader asks for them at
 * once (POST next serves window slots first) instead of waiting for a free lane, and yields the
 * link to them: natural-order slots whose bytes have not crossed the link yet are aborted and
 * kept (their leases and presigned URLs stay valid) to be sent again after the priority ones.
 */
import { ApiError, isTransient, sleep, withRetry } from './api.ts';
import type { Api, Assignment, PresignedUpload, PriorityResponse, StatusResponse } from './api.ts';
import type { Analysis } from './analyze.ts';
import { NATURAL_RANK, NEXT_RANK } from './pacer.ts';
import type { Pacer, Reservation } from './pacer.ts';
import type { Plan } from './planner.ts';

export type LocalSlotState = 'pending' | 'assigned' | 'generating' | 'uploading' | 'uploaded' | 'published' | 'failed';

export interface ProgressInfo {
  bytesDone: number;
  bytesTotal: number;
  /** upload rate of this run, bytes/s, over the last few seconds */
  bytesPerSecond: number;
  etaSeconds: number | null;
  slotCount: number;
  slotsPublished: number;
  slotsUploaded: number;
  slotsFailed: number;
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
  /** timeline events (priority received, link/PUT start and end, reported…) for diagnostics and benchmarks */
  onTrace?(event: string, data: Record<string, unknown>): void;
}

export interface UploaderOptions {
  parallel: number;
  pacer: Pacer;
  statusIntervalMs?: number;
  /** long-poll hold time for GET …/priority (default 20 s; the server caps it at 25 s) */
  priorityWaitMs?: number;
  /**
   * while priority slots keep the link busy, one natural-order slot still goes this often
   * (default 20 s, like the server's guard), so viewers never starve the rest of the upload
   */
  naturalEveryMs?: number;
}

/** What the uploader needs from the API client (a fake in the unit tests). */
export type UploaderApi = Pick<Api, 'next' | 'reportUploaded' | 'status' | 'put' | 'priority'>;

/** Builds a slot's segments (the real one is `Segmenter`). */
export interface SegmentSource {
  buildSlot(slot: number, trackIndexes: readonly number[]): Promise<Blob[]>;
}

type JobPhase = 'generating' | 'pacing' | 'putting' | 'reporting';

interface Job {
  a: Assignment;
  /** position in the viewers' priority list (0 = nearest a playhead); NATURAL_RANK otherwise */
  rank: number;
  ctrl: AbortController;
  phase: JobPhase;
  reservation: Reservation | null;
  /** aborted to give the link to priority slots: keep the assignment, send it again later */
  yielded: boolean;
}

const SPEED_WINDOW_MS = 8000;
/** a kept assignment is re-sent only if its URLs stay valid at least this long */
const URL_MARGIN_MS = 60_000;
/** rank of a slot the server marked priority that the long poll has not listed (yet) */
const UNLISTED_PRIORITY_RANK = 1000;

export class Uploader {
  readonly states: LocalSlotState[];
  private readonly serverStates: LocalSlotState[];
  private readonly abort = new AbortController();
  private readonly sent: { at: number; bytes: number }[] = [];
  private runStartedAt = 0;
  private initBytesDone = 0;
  private fatal: unknown = null;
  private statusTimer: ReturnType<typeof setInterval> | null = null;
  private polling = false;
  private complete = false;
  private pausing = false;
  private running = false;
  private readonly initBytes: number;

  /** slots being generated / paced / sent / reported by this tab */
  private readonly jobs = new Map<number, Job>();
  /** slots leased to this tab (URLs in hand) but not being sent: yielded, or assigned while the link was busy with priority slots */
  private readonly deferred = new Map<number, Assignment>();
  /** latest answer of the priority long poll */
  private prio: { version: number | null; slots: number[]; rank: Map<number, number> } = { version: null, slots: [], rank: new Map() };
  /** priority slots already asked for with POST next under the current version */
  private readonly asked = new Set<number>();
  private prioBusy = false;
  private prioDirty = false;
  /** the priority endpoint is missing (older server): take priority_slots from the status poll */
  private prioFromStatus = false;
  /** when a natural-order slot last got across the link (starvation guard) */
  private lastNaturalAt = 0;
  /** segment generation runs one slot at a time (it is fast; this bounds the page's read buffers) */
  private generation: Promise<unknown> = Promise.resolve();
  private serverComplete = false;
  private wake: (() => void) | null = null;
  private kicked = false;

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
    this.abort.abort(new DOMException('stopped', 'AbortError'));
    if (this.statusTimer) clearInterval(this.statusTimer);
  }

  get signal(): AbortSignal {
    return this.abort.signal;
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
    if (s.complete) this.complete = true;
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
    const now = performance.now();
    while (this.sent.length && this.sent[0]!.at < now - SPEED_WINDOW_MS) this.sent.shift();
    const windowMs = Math.min(SPEED_WINDOW_MS, Math.max(1, now - this.runStartedAt));
    const recent = this.sent.reduce((n, x) => n + x.bytes, 0);
    const bytesPerSecond = this.runStartedAt ? (recent * 1000) / windowMs : 0;
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
    };
  }

  private emitProgress(): void {
    this.cb.onProgress?.(this.progress());
  }

  async refreshStatus(): Promise<StatusResponse | null> {
    if (this.polling) return null;
    this.polling = true;
    try {
      const s = await this.api.status(this.videoId, this.abort.signal);
      this.applyStatus(s);
      return s;
    } catch (e) {
      if (!this.abort.signal.aborted) this.cb.onLog?.(`status: ${describe(e)}`);
      return null;
    } finally {
      this.polling = false;
    }
  }

  private async putWithRetry(upload: PresignedUpload, body: Blob | Uint8Array, signal: AbortSignal = this.abort.signal): Promise<void> {
    await withRetry(() => this.api.put(upload, body, signal), this.retryOpts(signal));
    this.sent.push({ at: performance.now(), bytes: body instanceof Blob ? body.size : body.byteLength });
  }

  async uploadInit(uploads: PresignedUpload[]): Promise<void> {
    this.runStartedAt ||= performance.now();
    for (const u of uploads) {
      const track = this.analysis.tracks.find((t) => t.id === u.track_id);
      if (!track) throw new Error(`server asked for an init segment of unknown track ${u.track_id}`);
      await this.opts.pacer.take(track.initSegment.byteLength, this.abort.signal, 0);
      await this.putWithRetry(u, track.initSegment);
      this.initBytesDone += track.initSegment.byteLength;
      this.emitProgress();
    }
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

  // ---- scheduling -------------------------------------------------------------------------

  /** wake the main loop (a job ended, priorities changed, pause…) */
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

  private isDone(slot: number): boolean {
    const s = this.states[slot];
    return s === 'uploaded' || s === 'published';
  }

  private rankOf(slot: number, serverSaysPriority = false): number {
    return this.prio.rank.get(slot) ?? (serverSaysPriority ? UNLISTED_PRIORITY_RANK : NATURAL_RANK);
  }

  /** a priority slot's bytes are still to cross the link: natural-order slots wait */
  private priorityOnLink(): boolean {
    for (const j of this.jobs.values()) if (j.rank !== NATURAL_RANK && j.phase !== 'reporting') return true;
    return false;
  }

  /** the URLs of a kept assignment are still usable */
  private usable(a: Assignment): boolean {
    const now = Date.now();
    return a.uploads.every((u) => {
      const t = Date.parse(u.expires_at);
      return !Number.isFinite(t) || t - now > URL_MARGIN_MS;
    });
  }

  private leaseExpired(a: Assignment): boolean {
    const t = Date.parse(a.lease_expires_at);
    return Number.isFinite(t) && t <= Date.now();
  }

  /** Natural-order slots whose bytes have not crossed the link give it up to priority slots. */
  private yieldLink(): void {
    const yielded: number[] = [];
    for (const job of this.jobs.values()) {
      if (job.rank !== NATURAL_RANK || job.yielded) continue;
      const beforeLinkDone = job.phase === 'generating' || job.phase === 'pacing' || (!this.opts.pacer.limited && job.phase === 'putting');
      if (!beforeLinkDone) continue;
      job.yielded = true;
      yielded.push(job.a.slot);
      job.ctrl.abort(new DOMException('yielding the link to a priority slot', 'AbortError'));
    }
    if (yielded.length) {
      this.trace('yield', { slots: yielded });
      this.cb.onLog?.(`yielding the link to priority slots: slot(s) ${yielded.join(', ')} will be sent again after them`);
    }
  }

  /**
   * Start (or keep, if natural order has to wait) assignments from POST next.
   * Returns how many were started.
   */
  private takeAssignments(list: Assignment[]): number {
    let started = 0;
    let priorityStarted = false;
    for (const a of list) {
      if (a.slot < 0 || a.slot >= this.states.length) {
        this.fatal ??= new Error(`server assigned slot ${a.slot}, outside the plan`);
        continue;
      }
      if (this.jobs.has(a.slot)) continue;
      this.deferred.delete(a.slot); // the fresher lease and URLs win
      const rank = this.rankOf(a.slot, a.priority);
      if (rank !== NATURAL_RANK) {
        this.startJob(a, rank);
        priorityStarted = true;
        started++;
      } else if (!this.priorityOnLink() && this.jobs.size < this.parallel && !this.pausing) {
        this.startJob(a, rank);
        started++;
      } else {
        this.deferred.set(a.slot, a);
        if (this.states[a.slot] !== 'uploaded' && this.states[a.slot] !== 'published') this.setState(a.slot, 'assigned');
      }
    }
    if (priorityStarted) this.yieldLink();
    return started;
  }

  /** Kept assignments go out again (lowest slot first) while lanes are free. */
  private resumeDeferred(): number {
    let started = 0;
    for (const slot of [...this.deferred.keys()].sort((x, y) => x - y)) {
      if (this.priorityOnLink() || this.jobs.size >= this.parallel) break;
      const a = this.deferred.get(slot)!;
      this.deferred.delete(slot);
      if (this.isDone(slot) || this.jobs.has(slot)) continue;
      if (!this.usable(a)) {
        // URLs about to expire: the lease runs out and the server hands the slot out again
        this.cb.onLog?.(`slot ${slot}: kept upload URLs expired; it will be reassigned`);
        this.setState(slot, 'pending');
        continue;
      }
      this.startJob(a, this.rankOf(slot));
      started++;
    }
    return started;
  }

  /**
   * Starvation guard: priority slots have kept natural order off the link for naturalEveryMs —
   * one natural-order slot goes next (ahead of waiting priority slots, without pre-empting).
   */
  private async naturalGuard(): Promise<number> {
    if (performance.now() - this.lastNaturalAt < (this.opts.naturalEveryMs ?? 20_000)) return 0;
    for (const j of this.jobs.values()) if (j.rank === NEXT_RANK) return 0;
    for (const j of this.jobs.values()) {
      if (j.rank === NATURAL_RANK && !j.yielded && (j.phase === 'generating' || j.phase === 'pacing')) {
        j.rank = NEXT_RANK;
        j.reservation?.setRank(NEXT_RANK);
        return 0;
      }
    }
    let a: Assignment | undefined;
    for (const slot of [...this.deferred.keys()].sort((x, y) => x - y)) {
      const d = this.deferred.get(slot)!;
      if (this.isDone(slot) || this.jobs.has(slot) || !this.usable(d)) continue;
      this.deferred.delete(slot);
      a = d;
      break;
    }
    if (!a) {
      const r = await this.api.next(this.videoId, this.secret, 1, this.abort.signal);
      if (r.complete) this.serverComplete = true;
      const got = r.assignments[0];
      if (!got || this.jobs.has(got.slot)) return 0;
      if (this.rankOf(got.slot, got.priority) !== NATURAL_RANK) return this.takeAssignments([got]);
      a = got;
    }
    this.cb.onLog?.(`slot ${a.slot}: natural order gets its turn between priority slots`);
    this.startJob(a, NEXT_RANK);
    return 1;
  }

  private get parallel(): number {
    return Math.max(1, Math.min(16, this.opts.parallel));
  }

  private startJob(a: Assignment, rank: number): void {
    const job: Job = { a, rank, ctrl: new AbortController(), phase: 'generating', reservation: null, yielded: false };
    const onStop = (): void => job.ctrl.abort(this.abort.signal.reason);
    this.abort.signal.addEventListener('abort', onStop, { once: true });
    this.jobs.set(a.slot, job);
    this.trace('job-start', { slot: a.slot, rank: Number.isFinite(rank) ? rank : null });
    void this.uploadSlot(job)
      .catch((e: unknown) => this.jobFailed(job, e))
      .finally(() => {
        this.abort.signal.removeEventListener('abort', onStop);
        if (this.jobs.get(a.slot) === job) this.jobs.delete(a.slot);
        this.kick();
        // a priority slot done: the next one the viewers need may be waiting for its turn
        if (job.rank !== NATURAL_RANK) void this.handlePriority();
      });
  }

  private jobFailed(job: Job, e: unknown): void {
    const slot = job.a.slot;
    if (this.abort.signal.aborted) return;
    if (job.yielded) {
      if (!this.deferred.has(slot) && !this.isDone(slot)) this.deferred.set(slot, job.a);
      if (!this.isDone(slot)) this.setState(slot, 'assigned');
      return;
    }
    if (e instanceof ApiError && !isTransient(e) && e.status === 403) {
      // presigned URL refused (expired?): the lease runs out and the server hands the slot out again
      this.cb.onLog?.(`slot ${slot}: ${e.message}; it will be reassigned`);
      this.setState(slot, 'pending');
      return;
    }
    this.fatal ??= e;
    this.kick();
  }

  private async uploadSlot(job: Job): Promise<void> {
    const a = job.a;
    const slot = a.slot;
    const signal = job.ctrl.signal;
    // the slot's segments (all tracks) go on the (paced) link as one unit, so a slot becomes
    // complete as early as possible; their sizes are in the plan, so the bytes are generated only
    // once the slot is on the wire (in parallel with its link time) and held only until sent
    this.setState(slot, 'generating');
    const tracks = a.uploads.map((u) => this.trackIndex(u.track_id));
    const planned = this.plan.slots[slot]!;
    const bytes = tracks.reduce((n, t) => n + (planned.tracks[t]?.size ?? 0), 0);
    let built: Promise<Blob[]> | null = null;
    const generate = (): Promise<Blob[]> => {
      if (!built) {
        const b = this.generation.then(() => this.segmenter.buildSlot(slot, tracks));
        this.generation = b.catch(() => undefined);
        built = b;
      }
      return built;
    };
    this.setState(slot, 'uploading');
    job.phase = 'pacing';
    const reservation = this.opts.pacer.reserve(bytes, job.rank, () => {
      this.trace('link-start', { slot, bytes });
      generate().catch(() => undefined); // awaited below; errors surface there
    });
    job.reservation = reservation;
    const onAbort = (): void => reservation.cancel(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      await reservation.done;
    } finally {
      signal.removeEventListener('abort', onAbort);
      job.reservation = null;
    }
    signal.throwIfAborted();
    const bodies = await generate();
    bodies.forEach((b, i) => {
      if (b.size !== planned.tracks[tracks[i]!]?.size) throw new Error(`slot ${slot}: built ${b.size} bytes for track #${tracks[i]}, planned ${planned.tracks[tracks[i]!]?.size}`);
    });
    signal.throwIfAborted();
    if (job.rank === NATURAL_RANK || job.rank === NEXT_RANK) this.lastNaturalAt = performance.now();
    job.phase = 'putting';
    this.trace('put-start', { slot, bytes });
    await Promise.all(a.uploads.map((u, i) => this.putWithRetry(u, bodies[i]!, signal)));
    job.phase = 'reporting';
    this.trace('put-done', { slot, bytes });
    try {
      const r = await withRetry(() => this.api.reportUploaded(this.videoId, this.secret, slot, this.abort.signal), this.retryOpts());
      this.trace('reported', { slot, queue: r?.queue });
      this.setState(slot, 'uploaded');
    } catch (e) {
      if (e instanceof ApiError && e.code === 'already_published') this.setState(slot, 'published');
      else throw e;
    }
    this.cb.onLog?.(`slot ${slot} uploaded${job.rank !== NATURAL_RANK ? ' (priority)' : ''}`);
  }

  // ---- priorities --------------------------------------------------------------------------

  private onPriority(r: Omit<PriorityResponse, 'version'> & { version: number | null }): void {
    const slots = (r.priority_slots ?? []).filter((s) => Number.isInteger(s) && s >= 0 && s < this.states.length);
    const sameSlots = slots.length === this.prio.slots.length && slots.every((s, i) => s === this.prio.slots[i]);
    const versionChanged = r.version !== this.prio.version;
    if (!versionChanged && sameSlots) return;
    if (versionChanged || r.version === null) this.asked.clear();
    this.prio = { version: r.version, slots, rank: new Map(slots.map((s, i) => [s, i])) };
    this.trace('priority', { version: r.version, slots: slots.slice(0, 16) });
    if (slots.length) this.cb.onLog?.(`viewers need slot(s) ${slots.slice(0, 8).join(', ')} first`);
    void this.handlePriority();
  }

  /** Serialised: act on the latest priority list (re-run if it changed meanwhile). */
  private async handlePriority(): Promise<void> {
    if (this.prioBusy) {
      this.prioDirty = true;
      return;
    }
    this.prioBusy = true;
    try {
      do {
        this.prioDirty = false;
        await this.applyPriority();
      } while (this.prioDirty && this.running && !this.abort.signal.aborted);
    } catch (e) {
      if (!this.abort.signal.aborted) {
        this.fatal ??= e;
        this.kick();
      }
    } finally {
      this.prioBusy = false;
    }
  }

  private async applyPriority(): Promise<void> {
    if (!this.running || this.pausing || this.abort.signal.aborted) return;
    // slots already on their way move up (or down) the link's queue
    for (const job of this.jobs.values()) {
      if (job.rank === NEXT_RANK && !this.prio.rank.has(job.a.slot)) continue; // the starvation guard's slot keeps its turn
      const rank = this.rankOf(job.a.slot, job.rank !== NATURAL_RANK);
      if (rank !== job.rank && !job.yielded) {
        job.rank = rank;
        job.reservation?.setRank(rank);
      }
    }
    const wanted = this.prio.slots.filter((s) => !this.isDone(s) && !this.jobs.has(s));
    if (!wanted.length) return;
    // slots this tab holds already (kept after yielding): send them now
    const fromDeferred: Assignment[] = [];
    for (const s of wanted) {
      const a = this.deferred.get(s);
      if (!a) continue;
      if (this.usable(a)) fromDeferred.push(a);
      else if (this.leaseExpired(a)) this.deferred.delete(s); // assignable again: ask for it below
    }
    if (fromDeferred.length) this.takeAssignments(fromDeferred);
    const ask = wanted.filter((s) => !this.jobs.has(s) && !this.deferred.has(s) && !this.asked.has(s));
    if (!ask.length) return;
    for (const s of ask) this.asked.add(s);
    this.trace('next-request', { reason: 'priority', want: ask.slice(0, 16) });
    const r = await this.api.next(this.videoId, this.secret, Math.min(16, ask.length), this.abort.signal);
    this.trace('next-response', { reason: 'priority', slots: r.assignments.map((a) => a.slot) });
    if (r.complete) this.serverComplete = true;
    if (!this.running) {
      // the run ended meanwhile (paused): keep the leases for the next run
      for (const a of r.assignments) if (!this.jobs.has(a.slot)) this.deferred.set(a.slot, a);
      return;
    }
    this.takeAssignments(r.assignments);
    this.kick();
  }

  /** The long poll: one request held open by the server until the viewers' windows change. */
  private async priorityLoop(signal: AbortSignal): Promise<void> {
    let failures = 0;
    const waitMs = this.opts.priorityWaitMs ?? 20_000;
    while (!signal.aborted) {
      try {
        const r = await this.api.priority(this.videoId, this.secret, this.prio.version, waitMs, signal);
        failures = 0;
        this.onPriority(r);
        if (r.complete) return;
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && (e.status === 405 || (e.status === 404 && e.code !== 'unknown_video'))) {
          this.cb.onLog?.('the server has no priority feed; using the status poll instead');
          this.prioFromStatus = true;
          return;
        }
        if (e instanceof ApiError && !isTransient(e)) {
          this.cb.onLog?.(`priority feed: ${describe(e)}`);
          return;
        }
        failures++;
        await sleep(Math.min(15_000, 250 * 2 ** Math.min(failures, 6)), signal).catch(() => undefined);
      }
    }
  }

  /** Upload until the server says the video is complete (or until paused). */
  async run(): Promise<'complete' | 'paused'> {
    this.pausing = false;
    this.running = true;
    this.serverComplete = false;
    this.runStartedAt ||= performance.now();
    const interval = this.opts.statusIntervalMs ?? 2000;
    this.statusTimer = setInterval(() => void this.refreshStatus(), interval);
    const runCtrl = new AbortController();
    const onStop = (): void => runCtrl.abort(this.abort.signal.reason);
    this.abort.signal.addEventListener('abort', onStop, { once: true });
    void this.priorityLoop(runCtrl.signal);
    this.lastNaturalAt = performance.now();
    let idle = false;
    try {
      for (;;) {
        if (this.fatal) throw this.fatal;
        this.abort.signal.throwIfAborted();
        if (this.pausing) {
          this.running = false;
          while (this.jobs.size) await this.waitForKick(1000);
          if (this.fatal) throw this.fatal;
          await this.refreshStatus();
          return 'paused';
        }
        let started = 0;
        if (this.priorityOnLink()) {
          started += await this.naturalGuard();
        } else {
          started += this.resumeDeferred();
          const free = this.parallel - this.jobs.size;
          if (free > 0 && !this.serverComplete) {
            const r = await this.api.next(this.videoId, this.secret, free, this.abort.signal);
            if (r.complete) this.serverComplete = true;
            started += this.takeAssignments(r.assignments);
          }
        }
        if (this.fatal) throw this.fatal;
        if (this.serverComplete && this.jobs.size === 0) {
          this.deferred.clear();
          break;
        }
        if (this.jobs.size === 0 && this.deferred.size === 0 && started === 0) {
          // everything left is leased or being validated: wait, then ask again
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
        await this.waitForKick(1500);
      }
      if (this.fatal) throw this.fatal;
      this.complete = true;
      await this.refreshStatus();
      return 'complete';
    } finally {
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
