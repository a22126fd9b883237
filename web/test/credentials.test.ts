import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApiError } from '../src/lib/api.ts';
import { looksLikeKey, needsKey, OwnerApi } from '../src/lib/credentials.ts';

type Seen = { url: string; method: string; headers: Record<string, string> };

function stubFetch(status: number, body: unknown): Seen[] {
  const seen: Seen[] = [];
  globalThis.fetch = (async (url: string, init: RequestInit) => {
    seen.push({ url, method: init.method ?? 'GET', headers: (init.headers ?? {}) as Record<string, string> });
    return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  }) as typeof fetch;
  return seen;
}

test('keys are recognised by shape before the server is asked', () => {
  assert.ok(looksLikeKey('csk_aMt1AvjlQX7P_em6Tv-w8yhV-SDB7rGwm12LnNQpXRkyCY'));
  assert.ok(!looksLikeKey('hunter2'));
  assert.ok(!looksLikeKey('csk_only'));
});

test('the owner API sends the stored key and reads my videos', async () => {
  const seen = stubFetch(200, { videos: [{ video_id: 'v1', title: 'Demo' }] });
  const api = new OwnerApi('http://api.test', () => 'csk_id_secretsecret');
  const { videos } = await api.videos();
  assert.equal(videos[0]?.title, 'Demo');
  assert.equal(seen[0]?.url, 'http://api.test/api/me/videos');
  assert.equal(seen[0]?.headers['x-api-key'], 'csk_id_secretsecret');
});

test('without a key nothing is sent, and a 401 asks for one', async () => {
  const seen = stubFetch(401, { error: 'missing_credential', message: 'missing credential' });
  const api = new OwnerApi('', () => null);
  const err = await api.createSession({} as never).catch((e: unknown) => e);
  assert.ok(err instanceof ApiError && err.code === 'missing_credential', String(err));
  assert.ok(needsKey(err));
  assert.equal(seen.length, 1, 'a 401 is not retried');
  assert.equal(seen[0]?.headers['x-api-key'], undefined);
});

test('a quota answer names the limit and is not retried on create', async () => {
  const seen = stubFetch(429, { error: 'quota_live_sessions', message: 'quota: at most 5 uploads in progress' });
  const err = await new OwnerApi('', () => 'csk_a_bbbbbbbb').createSession({} as never).catch((e: unknown) => e);
  assert.ok(err instanceof ApiError && err.status === 429 && err.message.includes('at most 5'));
  assert.ok(!needsKey(err));
  assert.equal(seen.length, 1);
});
