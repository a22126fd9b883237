/** The API client honours Retry-After (503 under contention, 429) and names its viewer in hints. */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Api, ApiError, parseRetryAfter, retryDelayMs } from '../src/lib/api.ts';
import { viewerId, withViewer } from '../src/lib/viewer-id.ts';

let base = '';
const seen: { t: number; url: string; body: string }[] = [];
let busyFor = 0;
const server = createServer((req, res) => {
  let body = '';
  req.on('data', (c: Buffer) => (body += c));
  req.on('end', () => {
    seen.push({ t: performance.now(), url: req.url ?? '', body });
    if (busyFor > 0) {
      busyFor--;
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
      res.end(JSON.stringify({ error: 'busy', message: 'retry shortly' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ window: [3, 4], requeued: [] }));
  });
});
before(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

describe('Retry-After', () => {
  it('is parsed as seconds or an HTTP date, and never shortens a backoff', () => {
    assert.equal(parseRetryAfter('2'), 2000);
    assert.equal(parseRetryAfter(null), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6_000);
    const e = new ApiError(503, 'busy', 'busy', 1000);
    assert.equal(retryDelayMs(e, 250), 1000);
    assert.equal(retryDelayMs(e, 4000), 4000);
    assert.equal(retryDelayMs(new Error('x'), 250), 250);
  });

  it('a 503 is retried no sooner than the server asked', async () => {
    seen.length = 0;
    busyFor = 1;
    const r = await new Api(base).prioritize('vid', { slot: 3 });
    assert.deepEqual(r.window, [3, 4]);
    assert.equal(seen.length, 2);
    const waited = seen[1]!.t - seen[0]!.t;
    assert.ok(waited >= 700, `retried after ${waited} ms (Retry-After: 1 s, jitter ±25 %)`);
  });

  it('a prioritize names this viewer and is given up after one retry', async () => {
    seen.length = 0;
    busyFor = 5;
    await assert.rejects(new Api(base).prioritize('vid', { position: 12.5 }), (e) => e instanceof ApiError && e.status === 503);
    assert.equal(seen.length, 2);
    const body = JSON.parse(seen[0]!.body) as { position: number; viewer: string };
    assert.equal(body.position, 12.5);
    assert.equal(body.viewer, viewerId());
    assert.match(body.viewer, /^[A-Za-z0-9_-]{1,64}$/);
    busyFor = 0;
  });

  it('segment URLs carry the viewer id, or nohint=1', () => {
    assert.equal(withViewer('/v/x/seg/0/3.m4s', false), `/v/x/seg/0/3.m4s?viewer=${viewerId()}`);
    assert.equal(withViewer('/v/x/seg/0/3.m4s', true), '/v/x/seg/0/3.m4s?nohint=1');
    assert.equal(withViewer('/v/x/seg/0/3.m4s?a=1', true), '/v/x/seg/0/3.m4s?a=1&nohint=1');
  });
});
