/**
 * Analysis + planning + segmentation against real files made by ffmpeg, checked with an
 * independent box reader (the backend worker's rules) and with ffprobe/ffmpeg.
 */
import assert from 'node:assert/strict';
import { openAsBlob } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createFile, DataStream, MP4BoxBuffer } from 'mp4box';
import { analyzeFile, ensureSampleLists, sampleTableOf } from '../src/lib/analyze.ts';
import type { Analysis, ByteSource } from '../src/lib/analyze.ts';
import { MediaFileError } from '../src/lib/errors.ts';
import { fragmentSize } from '../src/lib/fragment-size.ts';
import { planSegments, validatePlan } from '../src/lib/planner.ts';
import type { Plan } from '../src/lib/planner.ts';
import { matchSessionOffsets, sessionRequest } from '../src/lib/request.ts';
import { Segmenter, SegmentSizeMismatch } from '../src/lib/segmenter.ts';
import { checkSegment } from './helpers/fmp4check.ts';
import { keyframeTimes, makeClip, makeTempDir, packetHashes, sh, videoFrameCount } from './helpers/media.ts';

let dir = '';
let cleanup: () => Promise<void> = async () => {};
const files: Record<string, string> = {};

before(async () => {
  ({ dir, cleanup } = await makeTempDir('chunkstream-unit-'));
  const p = (n: string) => join(dir, n);
  files.fast = await makeClip(p('fast.mp4'), { seconds: 20, faststart: true });
  files.end = await makeClip(p('end.mp4'), { seconds: 20 });
  files.scenes = await makeClip(p('scenes.mp4'), { seconds: 45, scenes: true, x264params: 'keyint=450:min-keyint=20:scenecut=40' });
  files.vonly = await makeClip(p('vonly.mp4'), { seconds: 12, audio: false, x264params: 'keyint=60' });
  files.vp9 = await makeClip(p('vp9.mp4'), { seconds: 12, codec: 'vp9' });
  files.hevc = await makeClip(p('hevc.mp4'), { seconds: 3, codec: 'hevc' });
  files.mov = await makeClip(p('clip.mov'), { seconds: 12, x264params: 'keyint=60' });
  files.twoAudio = await makeClip(p('two-audio.mp4'), {
    seconds: 12,
    x264params: 'keyint=60',
    audioTracks: [{ language: 'eng', handler: 'SoundHandler' }, { language: 'deu', handler: 'Microphone' }],
  });
  files.fragFast = await makeClip(p('frag.mp4'), { seconds: 12, x264params: 'keyint=60', extra: ['-movflags', '+frag_keyframe+empty_moov'] });
  // OBS-like: empty moov + mvex, two audio tracks, fragments cut by duration (not only at keyframes)
  files.fragObs = await makeClip(p('obs-frag.mp4'), {
    seconds: 12,
    x264params: 'keyint=90',
    audioTracks: [{ handler: 'Track1' }, { handler: 'Track2' }],
    extra: ['-movflags', '+frag_keyframe+empty_moov+delay_moov+default_base_moof', '-frag_duration', '700000'],
  });
  files.intraRefresh = await makeClip(p('intra-refresh.mp4'), { seconds: 12, x264params: 'keyint=30:intra-refresh=1' });
  files.text = p('notes.mp4');
  await writeFile(files.text, 'Hello, this is not a video at all.\n'.repeat(100));
  const fast = await readFile(files.fast);
  files.truncFast = p('trunc-fast.mp4');
  await writeFile(files.truncFast, fast.subarray(0, Math.floor(fast.length * 0.6)));
  const end = await readFile(files.end);
  files.truncEnd = p('trunc-end.mp4');
  await writeFile(files.truncEnd, end.subarray(0, Math.floor(end.length * 0.6)));
});
after(() => cleanup());

class CountingSource implements ByteSource {
  bytesRead = 0;
  reads = 0;
  constructor(private readonly blob: Blob) {}
  get size(): number {
    return this.blob.size;
  }
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> } {
    this.reads++;
    this.bytesRead += Math.max(0, Math.min(end, this.blob.size) - start);
    return this.blob.slice(start, end);
  }
}

/** sync samples of the video track */
function syncCount(a: Analysis): number {
  const v = a.tracks.find((t) => t.kind === 'video');
  let n = 0;
  for (let i = 0; v && i < v.samples.count; i++) n += v.samples.sync[i]!;
  return n;
}

async function load(path: string): Promise<{ blob: Blob; analysis: Analysis }> {
  const blob = await openAsBlob(path);
  return { blob, analysis: await analyzeFile(blob, { fileName: path }) };
}

/** build every segment, check each one, and write per-track init+segments files for ffmpeg */
async function segmentAll(name: string, blob: Blob, analysis: Analysis, plan: Plan): Promise<string[]> {
  const seg = new Segmenter(blob, analysis, plan);
  const outs: string[] = [];
  for (let t = 0; t < analysis.tracks.length; t++) {
    const track = analysis.tracks[t]!;
    const parts: Uint8Array[] = [track.initSegment];
    for (let s = 0; s < plan.slots.length; s++) {
      const planned = plan.slots[s]!.tracks[t]!;
      // what the uploader sends (all tracks of the slot from shared reads)
      const viaSlot = new Uint8Array(await (await seg.buildSlot(s, analysis.tracks.map((_, i) => i)))[t]!.arrayBuffer());
      // the Blob of file slices is the same
      const viaBlob = new Uint8Array(await seg.buildBlob(s, t).arrayBuffer());
      assert.ok(Buffer.from(viaBlob).equals(Buffer.from(viaSlot)), `${name} slot ${s} track ${t}: buildBlob differs from buildSlot`);
      // ...and both are bit-identical to mp4box's createFragment (which needs sample tables in the moov)
      const bytes = analysis.fragmented ? viaSlot : await seg.build(s, t);
      assert.ok(Buffer.from(viaSlot).equals(Buffer.from(bytes)), `${name} slot ${s} track ${t}: buildSlot differs from createFragment`);
      const facts = checkSegment(bytes);
      const where = `${name} slot ${s} track ${track.id}`;
      assert.equal(bytes.byteLength, planned.size, `${where}: size`);
      assert.equal(facts.trackId, track.id, `${where}: tfhd track_ID`);
      assert.equal(facts.baseMediaDecodeTime, planned.start, `${where}: tfdt`);
      assert.equal(facts.durationSum, planned.duration, `${where}: durations`);
      assert.equal(facts.sampleCount, planned.last - planned.first + 1, `${where}: sample count`);
      assert.ok(facts.dataOffsetOk, `${where}: trun data_offset points at mdat payload`);
      if (track.kind === 'video') assert.ok(facts.firstSampleSync, `${where}: first sample is sync`);
      parts.push(bytes);
    }
    const out = join(dir, `${name}-track${track.id}.mp4`);
    await writeFile(out, Buffer.concat(parts));
    outs.push(out);
  }
  return outs;
}

describe('analysis', () => {
  it('reads only box headers and the moov, wherever the moov is', async () => {
    for (const name of ['fast', 'end']) {
      const blob = await openAsBlob(files[name]!);
      const src = new CountingSource(blob);
      const a = await analyzeFile(src);
      const moov = a.boxes.find((b) => b.type === 'moov')!;
      const ftyp = a.boxes.find((b) => b.type === 'ftyp')!;
      // + the first 4 KiB of each video sync sample (is it an IDR frame? random-access.ts)
      const allowed = moov.size + ftyp.size + 16 * a.boxes.length + 4096 * syncCount(a);
      assert.ok(src.bytesRead <= allowed, `${name}: read ${src.bytesRead} bytes, moov is ${moov.size}`);
      assert.ok(src.bytesRead < blob.size / 4);
      assert.deepEqual(
        a.tracks.map((t) => [t.kind, t.codec.split('.')[0]]),
        [
          ['video', 'avc1'],
          ['audio', 'mp4a'],
        ],
      );
      assert.ok(Math.abs(a.duration - 20) < 0.1, `duration ${a.duration}`);
    }
  });

  it('strips the single-entry edit list into a presentation time offset', async () => {
    const { analysis } = await load(files.fast!);
    const v = analysis.tracks[0]!;
    const a = analysis.tracks[1]!;
    assert.equal(v.editList, 'stripped');
    assert.equal(v.pto, 1024); // x264 B-frame delay, 2 frames at 15360/30
    assert.equal(a.editList, 'stripped');
    assert.equal(a.pto, 1024); // AAC priming
    const text = Buffer.from(v.initSegment).toString('latin1');
    assert.ok(!text.includes('edts') && !text.includes('elst'), 'no edts in init');
    assert.ok(text.includes('mvex') && text.includes('trex'), 'mvex in init');
    assert.ok(!text.includes('stss'), 'no stss in init');
  });

  it('the sample tables read from the stbl boxes equal those of mp4box’s sample objects', async () => {
    for (const name of ['fast', 'end', 'scenes', 'vonly', 'vp9', 'mov']) {
      const { blob, analysis } = await load(files[name]!);
      // reference: mp4box's usual parse, sample objects built at once
      const whole = await blob.arrayBuffer();
      const iso = createFile(false);
      iso.appendBuffer(MP4BoxBuffer.fromArrayBuffer(whole, 0), true);
      for (const t of analysis.tracks) {
        const ref = sampleTableOf(iso.getTrackById(t.id).samples);
        assert.equal(t.samples.count, ref.count, `${name} track ${t.id}: count`);
        for (const k of ['dts', 'duration', 'size', 'sync'] as const) {
          assert.deepEqual(Array.from(t.samples[k]), Array.from(ref[k]), `${name} track ${t.id}: ${k}`);
        }
        const objects = iso.getTrackById(t.id).samples;
        assert.deepEqual(Array.from(t.samples.offset), objects.map((x) => x.offset), `${name} track ${t.id}: offset`);
        assert.deepEqual(Array.from(t.samples.cto), objects.map((x) => x.cts - x.dts), `${name} track ${t.id}: composition offsets`);
      }
      // the sample objects built later for the segmenter are mp4box's own
      assert.equal(analysis.sampleListsBuilt, false);
      ensureSampleLists(analysis);
      for (const t of analysis.tracks) {
        const mine = t.trak.samples;
        const ref = iso.getTrackById(t.id).samples;
        assert.equal(mine.length, ref.length);
        for (let i = 0; i < ref.length; i += 97) {
          for (const k of ['offset', 'size', 'dts', 'cts', 'duration', 'is_sync', 'description_index'] as const) {
            assert.equal(mine[i]![k], ref[i]![k], `${name} track ${t.id} sample ${i}: ${k}`);
          }
        }
      }
    }
  });

  it('rejects a text file named .mp4', async () => {
    await assert.rejects(load(files.text!), (e: unknown) => e instanceof MediaFileError && e.code === 'not_mp4');
  });

  it('rejects truncated files (moov first, and moov at the end)', async () => {
    await assert.rejects(load(files.truncFast!), (e: unknown) => e instanceof MediaFileError && e.code === 'truncated' && /truncated/.test(e.message));
    await assert.rejects(load(files.truncEnd!), (e: unknown) => e instanceof MediaFileError && e.code === 'truncated');
  });

  it('rejects files with a damaged movie header', async () => {
    const good = await readFile(files.fast!);
    const moovAt = good.indexOf(Buffer.from('moov')) - 4;
    const cases: [string, (b: Buffer) => void][] = [
      ['mvhd with a huge size', (b) => b.writeUInt32BE(0x7fffffff, moovAt + 8)],
      ['garbage inside the moov', (b) => b.fill(0xa5, moovAt + 200, moovAt + 1200)],
      ['video sample sizes zeroed', (b) => b.fill(0, b.indexOf(Buffer.from('stsz'), moovAt) + 4, b.indexOf(Buffer.from('stsz'), moovAt) + 200)],
    ];
    for (const [name, damage] of cases) {
      const b = Buffer.from(good);
      damage(b);
      await assert.rejects(
        analyzeFile(new Blob([b])),
        (e: unknown) => e instanceof MediaFileError && ['corrupt', 'no_tracks'].includes(e.code) && /damaged|no video/.test(e.message),
        name,
      );
    }
  });

  it('rejects an empty file', async () => {
    await assert.rejects(analyzeFile(new Blob([])), (e: unknown) => e instanceof MediaFileError && e.code === 'empty');
  });

  it('keeps every audio track, with its language, its name and the default one marked', async () => {
    const { analysis } = await load(files.twoAudio!);
    assert.deepEqual(
      analysis.tracks.map((t) => [t.kind, t.language, t.label, t.default]),
      [
        ['video', undefined, undefined, false],
        // ffmpeg's default handler name is no name; ffmpeg enables the first track of the audio group
        ['audio', 'en', undefined, true],
        ['audio', 'de', 'Microphone', false],
      ],
    );
    assert.deepEqual(analysis.ignored, []);
  });

  it('reads fragmented MP4s from their moof headers only: ffmpeg empty_moov and OBS-like (two audio tracks)', async () => {
    for (const [name, audio] of [
      ['fragFast', 1],
      ['fragObs', 2],
    ] as const) {
      const blob = await openAsBlob(files[name]!);
      const src = new CountingSource(blob);
      const a = await analyzeFile(src);
      assert.equal(a.fragmented, true);
      const moofs = a.boxes.filter((b) => b.type === 'moof');
      assert.ok(moofs.length >= 4, `${name}: ${moofs.length} fragments`);
      const headers = a.boxes.filter((b) => b.type !== 'mdat').reduce((n, b) => n + b.size, 0);
      assert.ok(src.bytesRead <= headers + 16 * a.boxes.length + 4096 * syncCount(a), `${name}: read ${src.bytesRead} bytes; headers are ${headers}`);
      assert.ok(src.bytesRead < blob.size / 10, `${name}: read ${src.bytesRead} of ${blob.size} bytes`);
      assert.deepEqual(a.tracks.map((t) => t.kind), ['video', ...Array<string>(audio).fill('audio')]);
      // the same samples ffprobe counts, and the sync samples are the keyframes
      const v = a.tracks[0]!;
      assert.equal(v.samples.count, await videoFrameCount(files[name]!));
      const keys = await keyframeTimes(files[name]!);
      let syncs = 0;
      for (let i = 0; i < v.samples.count; i++) syncs += v.samples.sync[i]!;
      assert.equal(syncs, keys.length, `${name}: sync samples`);
      assert.ok(Math.abs(a.duration - 12) < 0.2, `${name}: duration ${a.duration}`);
    }
  });

  it('sync samples that are not IDR frames (x264 intra refresh) are not used as cut points', async () => {
    const keys = await keyframeTimes(files.intraRefresh!);
    assert.ok(keys.length >= 5, `the file marks ${keys.length} sync samples`);
    const { analysis } = await load(files.intraRefresh!);
    const v = analysis.tracks[0]!;
    const syncs: number[] = [];
    for (let i = 0; i < v.samples.count; i++) if (v.samples.sync[i]) syncs.push(i);
    assert.deepEqual(syncs, [0], 'only the IDR frame is a random-access point');
    assert.match(analysis.notices.join(' '), /intra refresh/);
    const plan = planSegments(analysis.tracks, { targetDuration: 4 });
    assert.equal(plan.slots.length, 1);
    assert.deepEqual(validatePlan(analysis.tracks, plan), []);
    // regular files keep every sync sample and get no notice
    const fast = await load(files.fast!);
    assert.deepEqual(fast.analysis.notices, []);
  });

  it('a damaged fragment header is refused with a reason, not a crash', async () => {
    const bytes = new Uint8Array(await readFile(files.fragFast!));
    const a = await analyzeFile(new Blob([bytes]));
    const moof = a.boxes.find((b) => b.type === 'moof')!;
    // declare 2^30 samples in the first trun
    const text = Buffer.from(bytes.subarray(moof.start, moof.start + moof.size)).toString('latin1');
    const trun = moof.start + text.indexOf('trun');
    const bad = bytes.slice();
    new DataView(bad.buffer).setUint32(trun + 8, 2 ** 30);
    await assert.rejects(analyzeFile(new Blob([bad])), (e: unknown) => e instanceof MediaFileError && /movie fragment/.test(e.message));
  });

  it('analyses HEVC (playability is decided by the browser later)', async () => {
    const { analysis } = await load(files.hevc!);
    assert.match(analysis.tracks[0]!.codec, /^hvc1\./);
  });
});

describe('createFragment output vs size arithmetic', () => {
  it('matches for single samples, random ranges, whole tracks, and 64-bit tfdt', async () => {
    const { blob, analysis } = await load(files.end!);
    ensureSampleLists(analysis);
    const iso = analysis.iso;
    let checked = 0;
    for (const track of analysis.tracks) {
      const samples = track.trak.samples;
      const n = samples.length;
      const ranges: [number, number][] = [
        [0, 0],
        [n - 1, n - 1],
        [0, n - 1],
      ];
      let seed = 7;
      for (let k = 0; k < 20; k++) {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        const a = seed % n;
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        const b = Math.min(n - 1, a + (seed % 400));
        ranges.push([a, b]);
      }
      for (const [first, last] of ranges) {
        for (const shift of [0, 2 ** 32]) {
          let payload = 0;
          for (let i = first; i <= last; i++) {
            const s = samples[i]!;
            s.data = new Uint8Array(await blob.slice(s.offset, s.offset + s.size).arrayBuffer());
            s.alreadyRead = s.size;
            s.dts += shift;
            s.cts += shift;
            payload += s.size;
          }
          const out = iso.createFragment(track.id, first, last, new DataStream());
          for (let i = first; i <= last; i++) {
            const s = samples[i]!;
            s.data = undefined;
            s.dts -= shift;
            s.cts -= shift;
          }
          const bmdt = samples[first]!.dts + shift;
          assert.equal(out.byteLength, fragmentSize(last - first + 1, payload, bmdt), `track ${track.id} [${first}, ${last}] shift ${shift}`);
          assert.equal(checkSegment(new Uint8Array(out.buffer, 0, out.byteLength)).baseMediaDecodeTime, bmdt);
          checked++;
        }
      }
    }
    assert.ok(checked > 80);
  });
});

describe('segmentation of real files', () => {
  const cases: [string, number][] = [
    ['fast', 4],
    ['end', 4],
    ['scenes', 10],
    ['vonly', 4],
    ['vp9', 4],
    ['mov', 4],
    ['twoAudio', 4],
    ['fragFast', 4],
    ['fragObs', 4],
  ];
  for (const [name, target] of cases) {
    it(`${name}: every segment passes the worker's checks; init+segments decode to the same packets`, async () => {
      const path = files[name]!;
      const { blob, analysis } = await load(path);
      const plan = planSegments(analysis.tracks, { targetDuration: target });
      assert.deepEqual(validatePlan(analysis.tracks, plan), []);
      assert.ok(plan.slots.length >= 3, `${plan.slots.length} slots`);
      const outs = await segmentAll(name, blob, analysis, plan);
      // same number of decoded video frames as the source
      assert.equal(await videoFrameCount(outs[0]!), await videoFrameCount(path));
      // bit-exact packets, per track
      assert.deepEqual(await packetHashes(outs[0]!, 'v'), await packetHashes(path, 'v'));
      // every audio track (a two-track file: both, each aligned to the video cuts)
      for (let t = 1; t < analysis.tracks.length; t++) assert.deepEqual(await packetHashes(outs[t]!, 'a'), await packetHashes(path, 'a', t - 1));
      // every slot starts on a source keyframe
      const keys = await keyframeTimes(path);
      const v = analysis.tracks[0]!;
      for (const slot of plan.slots) {
        const t = (slot.tracks[0]!.start - v.pto) / v.timescale; // ffprobe applies the edit list
        assert.ok(
          keys.some((k) => Math.abs(k - t) < 1e-3),
          `${name}: slot at ${t} is not on a keyframe`,
        );
      }
    });
  }

  it('scenes: irregular keyframes give irregular slots', async () => {
    const { analysis } = await load(files.scenes!);
    const plan = planSegments(analysis.tracks, { targetDuration: 10 });
    const durations = plan.slots.map((s) => Math.round(s.durationTime * 10) / 10);
    console.log(`scenes slot durations: ${durations.join(', ')}`);
    // scene cuts at 3.3, 15, 16.4, 22.5, 39.7, 41.9 s and a forced keyframe 15 s after 22.5:
    // 0 -> 15 (nearest to 10) -> 22.5 (nearest to 25) -> 37.5 (nearest to 32.5) -> end
    assert.ok(new Set(durations).size >= 2, `durations ${durations.join(', ')}`);
    assert.ok(Math.max(...durations) > 12, 'a long GOP gives a long slot');
    assert.ok(Math.min(...durations) < 8, 'a short GOP gives a short slot');
  });

  it('vp9: codec string is vp09', async () => {
    const { analysis } = await load(files.vp9!);
    assert.match(analysis.tracks[0]!.codec, /^vp09\./);
  });

  it('a segment built twice is identical (reproducible, whatever the generation order)', async () => {
    const { blob, analysis } = await load(files.fast!);
    const plan = planSegments(analysis.tracks, { targetDuration: 4 });
    const seg = new Segmenter(blob, analysis, plan);
    const a = await seg.build(2, 0);
    await seg.build(0, 0);
    await seg.build(1, 1);
    const b = await seg.build(2, 0);
    assert.deepEqual(Buffer.from(a), Buffer.from(b));
  });

  it('buildSlot also handles samples stored out of file order (assembled in memory)', async () => {
    const { blob, analysis } = await load(files.end!);
    const plan = planSegments(analysis.tracks, { targetDuration: 4 });
    const seg = new Segmenter(blob, analysis, plan);
    ensureSampleLists(analysis);
    // swap where two video samples of slot 1 are stored: both builders then read the same bytes
    const v = plan.slots[1]!.tracks[0]!;
    const samples = analysis.tracks[0]!.trak.samples;
    const store = analysis.tracks[0]!.samples.offset;
    const [i, j] = [v.first + 1, v.first + 5];
    const a = samples[i]!;
    const b = samples[j]!;
    const swap = (): void => {
      [a.offset, b.offset] = [b.offset, a.offset];
      [store[i], store[j]] = [store[j]!, store[i]!];
    };
    swap();
    try {
      const ref = await seg.build(1, 0);
      const [got] = await seg.buildSlot(1, [0]);
      assert.ok(Buffer.from(await got!.arrayBuffer()).equals(Buffer.from(ref)));
    } finally {
      swap();
    }
  });

  it('a plan whose size does not match the bytes is caught before upload', async () => {
    const { blob, analysis } = await load(files.fast!);
    const plan = planSegments(analysis.tracks, { targetDuration: 4 });
    plan.slots[1]!.tracks[0]!.size += 1;
    const seg = new Segmenter(blob, analysis, plan);
    await assert.rejects(seg.build(1, 0), SegmentSizeMismatch);
    assert.throws(() => seg.buildBlob(1, 0), SegmentSizeMismatch);
    await assert.rejects(seg.buildSlot(1, [0, 1]), SegmentSizeMismatch);
  });

  it("a B-frame video's edit goes into its composition offsets: decode and presentation both start at 0, as ffmpeg presents the source", async () => {
    const { blob, analysis } = await load(files.fast!);
    const [v, a] = analysis.tracks;
    assert.equal(v!.compositionShift, 1024, 'the x264 B-frame delay is folded');
    assert.equal(a!.compositionShift, 0, 'AAC priming stays a presentation time offset');
    const plan = planSegments(analysis.tracks, { targetDuration: 4 });
    const request = sessionRequest(analysis, plan, 'fp');
    assert.deepEqual(request.tracks.map((t) => t.presentation_time_offset), [0, 1024]);
    const outs = await segmentAll('fast-folded', blob, analysis, plan);
    // as MSE reads the first fragment (presentation = decode time + signed offset): both at 0;
    // trun: type, version/flags, sample_count, data_offset, then per sample duration, size, flags, offset
    const first = await new Segmenter(blob, analysis, plan).build(0, 0);
    const trun = Buffer.from(first).indexOf('trun');
    const view = new DataView(first.buffer, first.byteOffset);
    assert.equal(checkSegment(first).baseMediaDecodeTime, 0);
    assert.equal(first[trun + 4], 1, 'trun version 1: signed composition offsets');
    assert.equal(view.getInt32(trun + 28), 0, "the first sample's composition offset");
    // ffprobe's packet times: the source through its edit list, the output as written (ffmpeg
    // delays a stream with negative offsets, so the presentation is compared from its start)
    const times = async (path: string): Promise<{ pts: number[]; dts: number[] }> => {
      const out = await sh('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts,dts', '-of', 'csv=p=0', path]);
      const rows = out.trim().split('\n').map((l) => l.split(',').map(Number));
      return { pts: rows.map((r) => r[0]!).sort((x, y) => x - y), dts: rows.map((r) => r[1]!) };
    };
    const [source, output] = [await times(files.fast!), await times(outs[0]!)];
    assert.equal(Math.min(...output.dts), 0, 'no sample decodes before 0');
    const fromStart = (ts: number[]): number[] => ts.map((t) => t - ts[0]!);
    assert.deepEqual(fromStart(output.pts), fromStart(source.pts), 'every frame presented when the source presents it');
  });

  it('a resumed session keeps the offsets it was created with: folded, not folded (stored before folding), or refused', async () => {
    const { blob, analysis } = await load(files.fast!);
    const plan = planSegments(analysis.tracks, { targetDuration: 4 });
    const folded = await new Segmenter(blob, analysis, plan).build(1, 0);
    // created by this version: PTOs [0, 1024] stored, the fold stays
    assert.equal(matchSessionOffsets(analysis.tracks, [0, 1024]), true);
    assert.deepEqual(analysis.tracks.map((t) => t.compositionShift), [1024, 0]);
    // stored before edits were folded (no PTOs kept): its MPD says PTO 1024 for the video, so the
    // parts still to send carry the offsets as they are in the file
    assert.equal(matchSessionOffsets(analysis.tracks, undefined), true);
    assert.deepEqual(analysis.tracks.map((t) => t.compositionShift), [0, 0]);
    const unfolded = await new Segmenter(blob, analysis, plan).build(1, 0);
    const trun = (b: Uint8Array): number => Buffer.from(b).indexOf('trun');
    const firstOffset = (b: Uint8Array): number => new DataView(b.buffer, b.byteOffset).getInt32(trun(b) + 28);
    assert.equal(firstOffset(unfolded) - firstOffset(folded), 1024, 'the same part, its offsets not shifted');
    assert.equal(unfolded.byteLength, folded.byteLength, 'same planned size either way');
    // offsets no analysis of this file gives, or not one per track: not this session
    assert.equal(matchSessionOffsets(analysis.tracks, [512, 1024]), false);
    assert.equal(matchSessionOffsets(analysis.tracks, [0]), false);
    assert.equal(matchSessionOffsets(analysis.tracks, 'x' as unknown as number[]), false);
    assert.equal(matchSessionOffsets(analysis.tracks, [0, 1024]), true); // back to folded
    assert.deepEqual(analysis.tracks.map((t) => t.compositionShift), [1024, 0]);
  });

  it('ffmpeg accepts the per-track outputs as a fragmented MP4', async () => {
    const { blob, analysis } = await load(files.fast!);
    const plan = planSegments(analysis.tracks, { targetDuration: 4 });
    const outs = await segmentAll('fast-probe', blob, analysis, plan);
    const info = await sh('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_name,duration', '-of', 'csv=p=0', outs[0]!]);
    assert.match(info, /h264/);
  });
});
