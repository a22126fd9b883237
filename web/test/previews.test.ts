/**
 * Seek-bar previews, the parts that need no browser: the tile grid (same vectors as the server's
 * chunkstream_domain::previews tests), the VTT reader, which sample each tile is decoded from, and
 * the decoder configuration record taken from a real init segment.
 */
import assert from 'node:assert/strict';
import { openAsBlob } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { analyzeFile } from '../src/lib/analyze.ts';
import { planSegments } from '../src/lib/planner.ts';
import { codecDescription, cueAt, keyframesOf, parseThumbnailVtt, tilePosition } from '../src/lib/previews.ts';
import { makeClip, makeTempDir } from './helpers/media.ts';

let tmp: Awaited<ReturnType<typeof makeTempDir>>;
let clip = '';
before(async () => {
  tmp = await makeTempDir('chunkstream-previews-');
  clip = await makeClip(join(tmp.dir, 'clip.mp4'), { seconds: 12, x264params: 'keyint=30:min-keyint=30:scenecut=0' });
});
after(async () => tmp?.cleanup());

describe('previews', () => {
  it('places tiles row by row, sprite after sprite, like the server', () => {
    const grid = { columns: 10, rows: 10, tile_width: 128, tile_height: 72 };
    assert.deepEqual(tilePosition(grid, 0), { sprite: 0, x: 0, y: 0 });
    assert.deepEqual(tilePosition(grid, 13), { sprite: 0, x: 3 * 128, y: 72 });
    assert.deepEqual(tilePosition(grid, 99), { sprite: 0, x: 1152, y: 648 });
    assert.deepEqual(tilePosition(grid, 100), { sprite: 1, x: 0, y: 0 });
    assert.deepEqual(tilePosition(grid, 449), { sprite: 4, x: 9 * 128, y: 4 * 72 });
  });

  it('reads the server’s thumbnails track and finds the cue for a time', () => {
    const vtt = 'WEBVTT\n\n00:00:00.000 --> 00:00:04.000\n0.jpg#xywh=0,0,128,72\n\n00:00:04.000 --> 00:00:08.500\n0.jpg#xywh=128,0,128,72\n\n01:06:40.000 --> 01:06:44.000\n1.jpg#xywh=0,0,128,72\n';
    const cues = parseThumbnailVtt(vtt, 'http://host/v/abc/previews/thumbnails.vtt');
    assert.equal(cues.length, 3);
    assert.deepEqual(cues[1], { start: 4, end: 8.5, url: 'http://host/v/abc/previews/0.jpg', x: 128, y: 0, w: 128, h: 72 });
    assert.equal(cues[2]!.start, 4000);
    assert.equal(cueAt(cues, 0)?.x, 0);
    assert.equal(cueAt(cues, 3.999)?.x, 0);
    assert.equal(cueAt(cues, 4)?.x, 128);
    assert.equal(cueAt(cues, 5000)?.url, 'http://host/v/abc/previews/1.jpg');
    assert.deepEqual(parseThumbnailVtt('<html>not found</html>', 'http://host/'), []);
    assert.equal(cueAt([], 3), undefined);
  });

  it('decodes each tile from its part’s first video sample, a sync sample, with the avcC of the init segment', async () => {
    const file = await openAsBlob(clip);
    const analysis = await analyzeFile(file, { fileName: 'clip.mp4' });
    const plan = planSegments(analysis.tracks, { targetDuration: 2 });
    const keyframes = keyframesOf(analysis, plan);
    assert.equal(keyframes.length, plan.slots.length);
    assert.ok(keyframes.length >= 5, `${keyframes.length} parts`);
    const vi = analysis.tracks.findIndex((t) => t.kind === 'video');
    const video = analysis.tracks[vi]!;
    for (const k of keyframes) {
      const first = plan.slots[k.tile]!.tracks[vi]!.first;
      assert.equal(video.samples.sync[first], 1, `tile ${k.tile} from a sync sample`);
      assert.equal(k.offset, video.samples.offset[first]);
      // the sample is an IDR access unit: length-prefixed NALs, one of type 5
      const bytes = new Uint8Array(await file.slice(k.offset, k.offset + k.size).arrayBuffer());
      const types: number[] = [];
      for (let at = 0; at + 4 < bytes.length; ) {
        const len = new DataView(bytes.buffer).getUint32(at);
        types.push(bytes[at + 4]! & 0x1f);
        at += 4 + len;
      }
      assert.ok(types.includes(5), `tile ${k.tile}: NAL types ${types}`);
    }
    const avcC = codecDescription(video.initSegment);
    assert.ok(avcC, 'avcC found');
    assert.equal(avcC[0], 1, 'configurationVersion');
    assert.equal(`avc1.${[...avcC.slice(1, 4)].map((b) => b.toString(16).padStart(2, '0')).join('')}`, video.codec.toLowerCase());
    assert.equal(codecDescription(new Uint8Array(64)), undefined);
  });
});
