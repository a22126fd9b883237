/**
 * Failure handling against the real backend:
 *  - network errors on PUT are retried with backoff;
 *  - a segment that fails the server's validation (here: slot 1's video tfdt corrupted in flight)
 *    is marked failed, handed out again by `next`, rebuilt and sent again; the published result
 *    decodes to the right frame count.
 * Faults are injected in the page by wrapping XMLHttpRequest (and window.fetch) in an init script.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { makeClip, makeTempDir, videoFrameCount } from '../test/helpers/media.ts';
import { backendUp, ffprobeFrames, getStatus, manifestUrl, openUploader, waitForComplete, waitForLink, reportedSlots } from './helpers/app.ts';
import { BASE_URL, launch } from './helpers/browser.ts';

const FAULTS = `(() => {
  const faults = { networkErrors: 0, corrupted: 0, puts: 0 };
  window.__faults = faults;
  // slot 1's video tfdt (version 0) + 1: the server's check refuses the segment
  const corrupt = async (body) => {
    const head = new Uint8Array(await body.slice(0, 64).arrayBuffer());
    const v = new DataView(head.buffer);
    const slot = v.getUint32(20) - 1; // mfhd sequence_number = slot + 1
    const track = v.getUint32(44); // tfhd track_ID
    if (slot === 1 && track === 1 && faults.corrupted === 0) {
      faults.corrupted++;
      v.setUint32(60, v.getUint32(60) + 1);
      return new Blob([head, body.slice(64)]);
    }
    return body;
  };
  // the uploader PUTs with XMLHttpRequest (upload progress)
  const open = XMLHttpRequest.prototype.open;
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, ...rest) {
    this.__method = method;
    return open.call(this, method, ...rest);
  };
  XMLHttpRequest.prototype.send = function (body) {
    if (this.__method !== 'PUT' || !(body instanceof Blob) || body.size <= 100) return send.call(this, body);
    faults.puts++;
    if (faults.networkErrors < 2) {
      faults.networkErrors++;
      open.call(this, 'PUT', 'http://127.0.0.1:9/injected-network-error'); // connection refused
      return send.call(this, body);
    }
    void corrupt(body).then((b) => send.call(this, b));
  };
  const real = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    if (init && init.method === 'PUT' && init.body instanceof Blob && init.body.size > 100) {
      faults.puts++;
      if (faults.networkErrors < 2) {
        faults.networkErrors++;
        throw new TypeError('Failed to fetch (injected)');
      }
      init = { ...init, body: await corrupt(init.body) };
    }
    return real(input, init);
  };
})();`;

describe('failures', () => {
  let browser: Awaited<ReturnType<typeof launch>>;
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  before(async () => {
    assert.ok(await backendUp(), `backend not reachable at ${BASE_URL}`);
    tmp = await makeTempDir('chunkstream-e2e-fail-');
    browser = await launch();
  });
  after(async () => {
    await browser?.close();
    await tmp?.cleanup();
  });

  it('network errors are retried; a segment failing validation is sent again', { timeout: 180_000 }, async () => {
    const file = await makeClip(join(tmp.dir, 'fail.mp4'), { seconds: 30, x264params: 'keyint=60' });
    await browser.context.addInitScript(FAULTS);
    const up = await openUploader(browser.context, file, { seg: 4 });
    const reports = new Map<number, number>();
    up.page.on('request', (r) => {
      for (const slot of reportedSlots(r)) reports.set(slot, (reports.get(slot) ?? 0) + 1);
    });
    const { videoId } = await waitForLink(up);
    let sawFailed: string | undefined;
    const watcher = (async () => {
      for (let i = 0; i < 600 && !sawFailed; i++) {
        const s = await getStatus(videoId).catch(() => null);
        const f = s?.slots.findIndex((x) => x.state === 'failed') ?? -1;
        if (f >= 0) sawFailed = `slot ${f}: ${s!.slots[f]!.reason ?? ''}`;
        if (s?.complete) break;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await waitForComplete(up, 150_000);
    await watcher;
    const faults = await up.page.evaluate(() => (window as unknown as { __faults: Record<string, number> }).__faults);
    const status = await getStatus(videoId);
    console.log(`faults ${JSON.stringify(faults)}; reports per slot ${JSON.stringify([...reports])}; failed seen: ${sawFailed ?? 'no'}`);
    assert.equal(faults.networkErrors, 2);
    assert.equal(faults.corrupted, 1);
    assert.equal(status.complete, true);
    assert.equal(reports.get(1), 2, 'slot 1 was reported twice (bad, then good)');
    assert.equal(await ffprobeFrames(manifestUrl(videoId)), await videoFrameCount(file));
  });
});
