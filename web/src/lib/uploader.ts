/**
 * Upload loop: init segments first, then slots in the order the server assigns them (POST next),
 * a few in parallel. Each slot's segments are generated only when the slot is assigned, so a
 * viewer's prioritize request reorders generation as well as upload.
 */
import { Api, ApiError, isTransient, sleep, withRetry } from './api.ts';
import type { Assignment, PresignedUpload, StatusResponse } from './api.ts';
import type { Analysis } from './analyze.ts';
import type { Pacer } from './pacer.ts';
import type { Plan } from './planner.ts';
import type { Segmenter } from './segmenter.ts';

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
}

export interface UploaderOptions {
  parallel: number;
  pacer: Pacer;
  statusIntervalMs?: number;
}

const SPEED_WINDOW_MS = 8000;

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
  private readonly initBytes: number;

  constructor(
    private readonly api: Api,
    readonly videoId: string,
    private readonly secret: string,
    private readonly analysis: Analysis,
    private readonly plan: Plan,
    private readonly segmenter: Segmenter,
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
  }

  stop(): void {
    this.abort.abort(new DOMException('stopped', 'AbortError'));
    if (this.statusTimer) clearInterval(this.statusTimer);
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  private retryOpts() {
    return {
      signal: this.abort.signal,
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

  private async putWithRetry(upload: PresignedUpload, body: Blob | Uint8Array): Promise<void> {
    await withRetry(() => this.api.put(upload, body, this.abort.signal), this.retryOpts());
    this.sent.push({ at: performance.now(), bytes: body instanceof Blob ? body.size : body.byteLength });
  }

  async uploadInit(uploads: PresignedUpload[]): Promise<void> {
    this.runStartedAt ||= performance.now();
    for (const u of uploads) {
      const track = this.analysis.tracks.find((t) => t.id === u.track_id);
      if (!track) throw new Error(`server asked for an init segment of unknown track ${u.track_id}`);
      await this.opts.pacer.take(track.initSegment.byteLength, this.abort.signal);
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

  private async uploadSlot(a: Assignment): Promise<void> {
    const slot = a.slot;
    if (slot < 0 || slot >= this.states.length) throw new Error(`server assigned slot ${slot}, outside the plan`);
    // generate the slot's segments (all tracks), then send them as one unit on the (paced) link,
    // so a slot becomes complete as early as possible
    this.setState(slot, 'generating');
    const bodies = a.uploads.map((u) => this.segmenter.buildBlob(slot, this.trackIndex(u.track_id)));
    this.setState(slot, 'uploading');
    await this.opts.pacer.take(
      bodies.reduce((n, b) => n + b.size, 0),
      this.abort.signal,
    );
    await Promise.all(a.uploads.map((u, i) => this.putWithRetry(u, bodies[i]!)));
    try {
      await withRetry(() => this.api.reportUploaded(this.videoId, this.secret, slot, this.abort.signal), this.retryOpts());
      this.setState(slot, 'uploaded');
    } catch (e) {
      if (e instanceof ApiError && e.code === 'already_published') this.setState(slot, 'published');
      else throw e;
    }
    this.cb.onLog?.(`slot ${slot} uploaded${a.priority ? ' (priority)' : ''}`);
  }

  /** Upload until the server says the video is complete (or until paused). */
  async run(): Promise<'complete' | 'paused'> {
    this.pausing = false;
    this.runStartedAt ||= performance.now();
    const interval = this.opts.statusIntervalMs ?? 2000;
    this.statusTimer = setInterval(() => void this.refreshStatus(), interval);
    const inflight = new Map<number, Promise<void>>();
    const parallel = Math.max(1, Math.min(16, this.opts.parallel));
    let idle = false;
    try {
      for (;;) {
        if (this.fatal) throw this.fatal;
        this.abort.signal.throwIfAborted();
        if (this.pausing) {
          await Promise.allSettled(inflight.values());
          if (this.fatal) throw this.fatal;
          await this.refreshStatus();
          return 'paused';
        }
        const free = parallel - inflight.size;
        let started = 0;
        if (free > 0) {
          const r = await this.api.next(this.videoId, this.secret, free, this.abort.signal);
          if (r.complete) break;
          for (const a of r.assignments) {
            if (inflight.has(a.slot)) continue;
            started++;
            const p = this.uploadSlot(a)
              .catch((e: unknown) => {
                if (this.abort.signal.aborted) return;
                if (e instanceof ApiError && !isTransient(e) && e.status === 403) {
                  // presigned URL refused (expired?): the lease runs out and the server hands the slot out again
                  this.cb.onLog?.(`slot ${a.slot}: ${e.message}; it will be reassigned`);
                  this.setState(a.slot, 'pending');
                  return;
                }
                this.fatal ??= e;
              })
              .finally(() => inflight.delete(a.slot));
            inflight.set(a.slot, p);
          }
        }
        if (inflight.size === 0 && started === 0) {
          // everything left is leased or being validated: wait, then ask again
          this.cb.onIdle?.(this.idleReason());
          idle = true;
          await sleep(1000, this.abort.signal);
          void this.refreshStatus();
          continue;
        }
        if (idle) {
          idle = false;
          this.cb.onIdle?.(null);
        }
        if (inflight.size >= parallel || started === 0) {
          await Promise.race([...inflight.values(), sleep(1500, this.abort.signal)]);
        }
      }
      await Promise.allSettled(inflight.values());
      if (this.fatal) throw this.fatal;
      this.complete = true;
      await this.refreshStatus();
      return 'complete';
    } finally {
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
