/** Client for the Chunkstream HTTP API (docs/api.md), with retries on network errors. */
import { viewerId } from './viewer-id.ts';

export interface PresignedUpload {
  track_id: number;
  method: string;
  url: string;
  headers: Record<string, string>;
  expires_at: string;
}

export interface PlanTrackJson {
  id: number;
  kind: 'video' | 'audio';
  codec: string;
  timescale: number;
  width?: number;
  height?: number;
  sample_rate?: number;
  channels?: number;
  presentation_time_offset: number;
  init_size: number;
  /** BCP 47 */
  language?: string;
  /** shown in players' track menus */
  label?: string;
  /** the audio track players pick first */
  default?: boolean;
}

export interface CreateSessionRequest {
  file_name?: string;
  fingerprint?: string;
  tracks: PlanTrackJson[];
  slots: { tracks: { start: number; duration: number; size: number }[] }[];
}

export interface CreateSessionResponse {
  video_id: string;
  upload_secret: string;
  watch_url: string;
  manifest_url: string;
  /** HLS multivariant playlist (servers before HLS support lack it) */
  hls_url?: string;
  status_url: string;
  slot_count: number;
  init_uploads: PresignedUpload[];
}

export interface Assignment {
  slot: number;
  priority: boolean;
  lease_expires_at: string;
  uploads: PresignedUpload[];
}

/** POST /api/videos/{id}/next */
export interface NextRequest {
  max: number;
  /** slots whose PUTs (every track) are done, reported with this call (at most 16, no repeats; omitted when none) */
  uploaded?: number[];
}

/** One entry per slot a `next` call reported (`uploaded`), in its order. */
export interface SlotReport {
  slot: number;
  queue: 'normal' | 'priority';
  /** as for the single route: a job went to `queue` */
  enqueued: boolean;
  /** as for the single route: checked and public now (also true with `already_published`) */
  published: boolean;
  /**
   * The report was refused: `upload_missing` / `upload_size_mismatch` (the objects are not there
   * with the planned sizes; the lease stays: PUT again, report again), `already_published`.
   */
  error?: string | null;
  message?: string | null;
}

export interface NextResponse {
  assignments: Assignment[];
  complete: boolean;
  remaining: number;
  priority_slots: number[];
  /** one per reported slot, in request order (older servers, and calls reporting none, omit it) */
  reports?: SlotReport[];
}

export type SlotState = 'pending' | 'assigned' | 'uploaded' | 'published' | 'failed';

export interface StatusResponse {
  video_id: string;
  complete: boolean;
  slot_count: number;
  duration: number;
  counts: Record<SlotState, number>;
  /** one per part (empty when asked with `parts: 'states'`) */
  slots: SlotStatus[];
  /** one letter per part: p pending, a assigned, u uploaded, P published, f failed (older servers omit it) */
  states?: string;
  priority_slots: number[];
}

export interface SlotStatus {
  start: number;
  duration: number;
  state: SlotState;
  reason?: string;
}

const STATE_LETTERS: Record<string, SlotState> = { p: 'pending', a: 'assigned', u: 'uploaded', P: 'published', f: 'failed' };

/**
 * A `parts: 'states'` answer's parts, from the times of an earlier full answer; null when the
 * two do not fit together (another part count, or no `states`).
 */
export function partsFromStates(times: readonly { start: number; duration: number }[], states: string | undefined): SlotStatus[] | null {
  if (states === undefined || states.length !== times.length) return null;
  return times.map((t, i) => ({ start: t.start, duration: t.duration, state: STATE_LETTERS[states[i]!] ?? 'pending' }));
}

/** GET /api/videos/{id}/priority (uploader long poll) */
export interface PriorityResponse {
  /** changes whenever the viewers' priority windows change */
  version: number;
  /** not-yet-published slots of active viewer windows, nearest to a playhead first */
  priority_slots: number[];
  complete?: boolean;
  /** window slots leased to this uploader with the answer (`lease` > 0; older servers omit it) */
  assignments?: Assignment[];
  /**
   * While no viewer waits for a part (and the server has feed queues): a presigned SQS receive to
   * wait on (`Api.wake`, held up to 20 s, back when a watch page opens or a viewer seeks) instead of
   * holding the next poll open; then ask again with `waitMs` 0. Absent: hold the poll.
   */
  wake_url?: string | null;
  /**
   * A watch page is open or a viewer waits for a part: report finished parts at once (else they
   * may ride on the next `next` call). Older servers omit it: no `wake_url` then means watched.
   */
  watched?: boolean;
}

export interface PrioritizeResponse {
  window: number[];
  requeued: number[];
}

/** A 4xx answer from the API (or a 5xx once retries are exhausted). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** the server's Retry-After (503 under contention, 429), in ms */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** A Retry-After header value (delta-seconds or an HTTP date) in ms; undefined if absent or bad. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.min(Number(v), 3600) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.min(at - now, 3_600_000));
}

/**
 * How long to wait before retrying after `e`: the server's Retry-After when it sent one (never
 * less), else `fallbackMs`. For loops that retry on their own (e.g. the uploader's priority feed).
 */
export function retryDelayMs(e: unknown, fallbackMs: number): number {
  const asked = e instanceof ApiError ? e.retryAfterMs : undefined;
  return asked === undefined ? fallbackMs : Math.max(asked, fallbackMs);
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export interface RetryOptions {
  signal?: AbortSignal;
  /** called before each wait, e.g. to show "connection problem, retrying in 4 s" */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** called after a success that followed failures */
  onRecovered?: () => void;
  maxDelayMs?: number;
  /** give up after this many attempts (default: never) */
  maxAttempts?: number;
}

/** Transient: network failure (fetch TypeError), timeouts, 408/429/5xx. */
export function isTransient(e: unknown): boolean {
  if (e instanceof ApiError) return e.status === 408 || e.status === 429 || e.status >= 500;
  if (e instanceof DOMException && e.name === 'AbortError') return false;
  return e instanceof TypeError || (e instanceof DOMException && e.name === 'TimeoutError');
}

export async function withRetry<T>(fn: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  let attempt = 0;
  for (;;) {
    try {
      const r = await fn();
      if (attempt > 0) opts.onRecovered?.();
      return r;
    } catch (e) {
      attempt++;
      if (!isTransient(e) || (opts.maxAttempts !== undefined && attempt >= opts.maxAttempts) || opts.signal?.aborted) throw e;
      const base = Math.min(opts.maxDelayMs ?? 15_000, 500 * 2 ** Math.min(attempt - 1, 10));
      // a 503/429 says when to come back: never sooner (jitter on top spreads the herd)
      const delay = Math.round(retryDelayMs(e, base) * (0.75 + Math.random() * 0.5));
      opts.onRetry?.(e, attempt, delay);
      await sleep(delay, opts.signal);
    }
  }
}

async function errorFrom(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { error?: string; message?: string };
    if (body.error) code = body.error;
    if (body.message) message = body.message;
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, code, message, parseRetryAfter(res.headers.get('retry-after')));
}

/** Headers a page may not set itself (the browser derives them). */
const FORBIDDEN_HEADERS = new Set(['content-length', 'host', 'connection', 'accept-encoding', 'expect', 'keep-alive', 'transfer-encoding']);

export class Api {
  constructor(
    readonly base: string = '',
    private readonly retry: RetryOptions = {},
  ) {}

  private call<T>(method: string, path: string, body?: unknown, secret?: string, signal?: AbortSignal, retry: RetryOptions = {}): Promise<T> {
    return withRetry(() => this.callOnce<T>(method, path, body, secret, signal), { ...this.retry, ...retry, ...(signal ? { signal } : {}) });
  }

  private async callOnce<T>(method: string, path: string, body?: unknown, secret?: string, signal?: AbortSignal): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (secret) headers.authorization = `Bearer ${secret}`;
    const init: RequestInit = { method, headers, cache: 'no-store' };
    if (body !== undefined) init.body = JSON.stringify(body);
    if (signal) init.signal = signal;
    const res = await fetch(this.base + path, init);
    if (!res.ok) throw await errorFrom(res);
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  }

  createSession(req: CreateSessionRequest): Promise<CreateSessionResponse> {
    return this.call('POST', '/api/videos', req);
  }
  freshInitUploads(id: string, secret: string): Promise<{ init_uploads: PresignedUpload[] }> {
    return this.call('POST', `/api/videos/${encodeURIComponent(id)}/init`, { release_leases: true }, secret);
  }
  /**
   * Leases up to `max` parts; `uploaded` reports finished parts in the same call (batched reports:
   * one request and one state write instead of one per part). A retry (503) sends the same list.
   */
  next(id: string, secret: string, max: number, signal?: AbortSignal, uploaded: readonly number[] = []): Promise<NextResponse> {
    const body: NextRequest = uploaded.length ? { max, uploaded: [...uploaded] } : { max };
    return this.call('POST', `/api/videos/${encodeURIComponent(id)}/next`, body, secret, signal);
  }
  reportUploaded(id: string, secret: string, slot: number, signal?: AbortSignal): Promise<{ slot: number; queue: string; published?: boolean }> {
    return this.call('POST', `/api/videos/${encodeURIComponent(id)}/slots/${slot}/uploaded`, undefined, secret, signal);
  }
  /**
   * Long poll for the viewers' priority windows: answers at once when the server's version differs
   * from `after` (or `after` is null), else when the windows change or after `waitMs`.
   * One attempt (the caller's loop retries).
   */
  priority(id: string, secret: string, after: number | null, waitMs: number, signal?: AbortSignal, lease = 0): Promise<PriorityResponse> {
    const q = new URLSearchParams({ wait_ms: String(Math.max(0, Math.min(25_000, Math.round(waitMs)))) });
    if (after !== null) q.set('after', String(after));
    if (lease > 0) q.set('lease', String(Math.min(16, Math.round(lease))));
    return this.callOnce('GET', `/api/videos/${encodeURIComponent(id)}/priority?${q}`, undefined, secret, signal);
  }
  /**
   * Waits on a priority answer's `wake_url` (an SQS long poll the server presigned): resolves when
   * it answers, whatever it says. A cross-origin URL without CORS headers, so the answer is opaque
   * and never read; rejects on a network error or when `signal` aborts. One attempt. No Referer
   * (the queue needs none, and LocalStack refuses a request whose Referer is not an origin it allows).
   */
  async wake(url: string, signal?: AbortSignal): Promise<void> {
    const init: RequestInit = { mode: 'no-cors', cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
    if (signal) init.signal = signal;
    const res = await fetch(url, init);
    // an opaque answer has no body; anything else (same origin, a test server) is dropped unread
    await res.body?.cancel().catch(() => undefined);
  }
  /** A viewer's seek: `viewer` (default: this tab's id) names the window it replaces. */
  prioritize(id: string, target: { position: number } | { slot: number }, viewer: string = viewerId()): Promise<PrioritizeResponse> {
    // a hint retried much later would move the window back to an old position: one retry at most
    return this.call('POST', `/api/videos/${encodeURIComponent(id)}/prioritize`, { ...target, viewer }, undefined, undefined, { maxAttempts: 2 });
  }
  /** This watch page is open (while the video uploads: the uploader's feed then re-reads more often). */
  watching(id: string): Promise<void> {
    return this.callOnce('POST', `/api/videos/${encodeURIComponent(id)}/watching`);
  }
  /** `parts: 'states'`: no `slots`, one letter per part in `states` (1 byte per part, for polling) */
  status(id: string, signal?: AbortSignal, parts: 'full' | 'states' = 'full'): Promise<StatusResponse> {
    const query = parts === 'states' ? '?parts=states' : '';
    return this.call('GET', `/api/videos/${encodeURIComponent(id)}/status${query}`, undefined, undefined, signal);
  }

  /**
   * PUT bytes to a presigned URL (one attempt; callers decide about retries). `onProgress` gets the
   * bytes handed to the network so far (XHR upload progress: real bytes, not a model); where there is
   * no XMLHttpRequest (Node) it is called once at the end.
   */
  put(upload: PresignedUpload, body: Blob | Uint8Array, signal?: AbortSignal, onProgress?: (loaded: number) => void): Promise<void> {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(upload.headers ?? {})) if (!FORBIDDEN_HEADERS.has(k.toLowerCase())) headers[k] = v;
    const size = body instanceof Blob ? body.size : body.byteLength;
    if (typeof XMLHttpRequest === 'undefined') return this.putWithFetch(upload, headers, body, size, signal, onProgress);
    return new Promise<void>((resolve, reject) => {
      signal?.throwIfAborted();
      const xhr = new XMLHttpRequest();
      const onAbort = (): void => xhr.abort();
      const settle = (f: () => void): void => {
        signal?.removeEventListener('abort', onAbort);
        f();
      };
      xhr.open(upload.method || 'PUT', upload.url);
      for (const [k, v] of Object.entries(headers)) xhr.setRequestHeader(k, v);
      xhr.upload.onprogress = (e) => onProgress?.(e.loaded);
      xhr.onload = () =>
        settle(() => {
          if (xhr.status >= 200 && xhr.status < 300) {
            onProgress?.(size);
            resolve();
          } else reject(storageError(xhr.status, xhr.responseText));
        });
      xhr.onerror = () => settle(() => reject(new TypeError(`network error during the upload to storage`)));
      xhr.ontimeout = () => settle(() => reject(new DOMException('upload timed out', 'TimeoutError')));
      xhr.onabort = () => settle(() => reject(signal?.reason ?? new DOMException('aborted', 'AbortError')));
      signal?.addEventListener('abort', onAbort, { once: true });
      xhr.send(body as Blob);
    });
  }

  private async putWithFetch(
    upload: PresignedUpload,
    headers: Record<string, string>,
    body: Blob | Uint8Array,
    size: number,
    signal?: AbortSignal,
    onProgress?: (loaded: number) => void,
  ): Promise<void> {
    const init: RequestInit = { method: upload.method || 'PUT', headers, body: body as Blob | Uint8Array<ArrayBuffer> };
    if (signal) init.signal = signal;
    const res = await fetch(upload.url, init);
    if (!res.ok) throw storageError(res.status, await res.text().catch(() => ''));
    onProgress?.(size);
  }
}

function storageError(status: number, text: string): ApiError {
  const code = /<Code>([^<]+)<\/Code>/.exec(text)?.[1] ?? `http_${status}`;
  return new ApiError(status, code, `upload refused by storage: ${status} ${code}`);
}
