/**
 * The uploader's credential (an API key, `csk_…`), asked for once and kept in localStorage, and the
 * owner API: create a session with it, list "my videos", keep / delete one. The server answers 401
 * without a valid key (unless it runs open, locally), 404 for someone else's video, 429/413 naming
 * the quota that was hit.
 */
import { ApiError, withRetry } from './api.ts';
import type { CreateSessionRequest, CreateSessionResponse, RetryOptions } from './api.ts';

const KEY_STORAGE = 'chunkstream:api-key';

function storage(): Storage | null {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

export function loadKey(): string | null {
  const k = storage()?.getItem(KEY_STORAGE)?.trim();
  return k ? k : null;
}

export function saveKey(key: string): void {
  try {
    storage()?.setItem(KEY_STORAGE, key.trim());
  } catch {
    /* disabled storage: the key lasts for this page only */
  }
}

export function forgetKey(): void {
  storage()?.removeItem(KEY_STORAGE);
}

/** A key looks like `csk_<id>_<secret>`; anything else is refused before asking the server. */
export function looksLikeKey(key: string): boolean {
  return /^csk_[A-Za-z0-9-]{1,32}_[A-Za-z0-9_-]{8,128}$/.test(key.trim());
}

export interface VideoSummary {
  video_id: string;
  title: string;
  duration_secs: number;
  size_bytes: number;
  created_ms: number;
  kept: boolean;
  expires_ms?: number | null;
  /** `gone`: the session was removed while the answer was made; `damaged`: its state cannot be read (delete it) */
  state: 'uploading' | 'processing' | 'ready' | 'gone' | 'damaged';
  published_slots: number;
  total_slots: number;
  watch_url: string;
}

export interface MeResponse {
  owner: string;
  via: 'api_key' | 'jwt' | 'open';
  limits: { live_sessions: number; bytes_per_day: number };
  usage: { live_sessions: number; bytes_today: number };
  retention_days: number;
}

async function errorFrom(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`;
  let message = `HTTP ${res.status}`;
  try {
    const body = (await res.json()) as { error?: string; message?: string };
    if (body.error) code = body.error;
    if (body.message) message = body.message;
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, code, message);
}

export class OwnerApi {
  constructor(
    readonly base: string = '',
    private readonly key: () => string | null = loadKey,
    private readonly retry: RetryOptions = {},
  ) {}

  private async once<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const key = this.key();
    if (key) headers['x-api-key'] = key;
    const init: RequestInit = { method, headers, cache: 'no-store' };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(this.base + path, init);
    if (!res.ok) throw await errorFrom(res);
    return (await res.json()) as T;
  }

  private call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return withRetry(() => this.once<T>(method, path, body), this.retry);
  }

  /** POST /api/videos with the stored key. */
  createSession(req: CreateSessionRequest): Promise<CreateSessionResponse> {
    // Not retried on 429: a quota answer is final until something changes.
    return this.once('POST', '/api/videos', req);
  }
  me(): Promise<MeResponse> {
    return this.call('GET', '/api/me');
  }
  videos(): Promise<{ videos: VideoSummary[] }> {
    return this.call('GET', '/api/me/videos');
  }
  remove(id: string): Promise<{ video_id: string; deleted_objects: number }> {
    return this.call('DELETE', `/api/me/videos/${encodeURIComponent(id)}`);
  }
  keep(id: string, kept: boolean): Promise<VideoSummary> {
    return this.call('POST', `/api/me/videos/${encodeURIComponent(id)}/keep`, { kept });
  }
}

/** Whether an error means "ask for a key": none, wrong or revoked. */
export function needsKey(e: unknown): boolean {
  return e instanceof ApiError && e.status === 401;
}
