import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { LoaderResponse, RetryConfig } from 'hls.js';
import { retryMissingParts } from '../src/lib/retry-missing.ts';

const config = { maxNumRetry: 3, retryDelayMs: 250, maxRetryDelayMs: 250 } as RetryConfig;
const answer = (code: number): LoaderResponse => ({ url: 'http://x/v/id/seg/0/7.m4s', data: undefined, code });

describe('hls.js retry policy for parts', () => {
  it('a part answered 404 or 403 (not uploaded yet) is asked for again, however often it was', () => {
    for (const code of [404, 403]) assert.equal(retryMissingParts(config, 1_000, false, answer(code), false), true, String(code));
  });
  it('other errors keep hls.js behaviour: its own verdict, or a timeout within maxNumRetry', () => {
    assert.equal(retryMissingParts(config, 0, false, answer(500), false), false);
    assert.equal(retryMissingParts(config, 0, false, answer(500), true), true);
    assert.equal(retryMissingParts(config, 2, true, undefined, false), true);
    assert.equal(retryMissingParts(config, 3, true, undefined, false), false);
    assert.equal(retryMissingParts(null, 0, true, undefined, false), false);
  });
});
