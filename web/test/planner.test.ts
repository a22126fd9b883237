import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fragmentSize, moofSize } from '../src/lib/fragment-size.ts';
import { makeSampleTable, planSegments, validatePlan } from '../src/lib/planner.ts';
import type { PlanTrackInput } from '../src/lib/planner.ts';

const VTS = 15360;
const FPS = 30;
const FRAME = VTS / FPS; // 512

/** video track with keyframes at the given times (seconds), 30 fps */
function video(opts: { seconds: number; keyframes: number[]; frameBytes?: number; keyBytes?: number; pto?: number; id?: number }): PlanTrackInput {
  const n = Math.round(opts.seconds * FPS);
  const keys = new Set(opts.keyframes.map((t) => Math.round(t * FPS)));
  keys.add(0);
  const sync: boolean[] = [];
  const size: number[] = [];
  for (let i = 0; i < n; i++) {
    sync.push(keys.has(i));
    size.push(keys.has(i) ? (opts.keyBytes ?? 20000) : (opts.frameBytes ?? 2000));
  }
  return {
    id: opts.id ?? 1,
    kind: 'video',
    timescale: VTS,
    pto: opts.pto ?? 0,
    samples: makeSampleTable({ duration: new Array(n).fill(FRAME), size, sync }),
  };
}

function regularKeys(seconds: number, gop: number): number[] {
  const k: number[] = [];
  for (let t = 0; t < seconds; t += gop) k.push(t);
  return k;
}

/** AAC-like audio: 1024-sample frames at 48 kHz */
function audio(opts: { seconds: number; bytes?: number; pto?: number; id?: number }): PlanTrackInput {
  const n = Math.ceil((opts.seconds * 48000) / 1024);
  return {
    id: opts.id ?? 2,
    kind: 'audio',
    timescale: 48000,
    pto: opts.pto ?? 0,
    samples: makeSampleTable({ duration: new Array(n).fill(1024), size: new Array(n).fill(opts.bytes ?? 300), sync: new Array(n).fill(true) }),
  };
}

const starts = (plan: ReturnType<typeof planSegments>): number[] => plan.slots.map((s) => Math.round(s.startTime * 1000) / 1000);

describe('planner: cut points', () => {
  it('regular 2 s GOPs, 10 s target -> 10 s slots on keyframes', () => {
    const v = video({ seconds: 60, keyframes: regularKeys(60, 2) });
    const plan = planSegments([v], { targetDuration: 10 });
    assert.deepEqual(starts(plan), [0, 10, 20, 30, 40, 50]);
    assert.deepEqual(validatePlan([v], plan), []);
    for (const s of plan.slots) assert.equal(v.samples.sync[s.tracks[0]!.first], 1);
  });

  it('GOP that does not divide the target: nearest keyframe, ties to the earlier one', () => {
    const v = video({ seconds: 40, keyframes: regularKeys(40, 4) });
    const plan = planSegments([v], { targetDuration: 10 });
    // from 0: 8 and 12 are equally near 10 -> 8; from 8: 16 vs 20 near 18 -> 16; ...
    assert.deepEqual(starts(plan), [0, 8, 16, 24, 32]);
    const v3 = video({ seconds: 40, keyframes: regularKeys(40, 3) });
    // from 0: 9 (1 away) vs 12 -> 9; from 9: 18 vs 21 near 19 -> 18; from 18: 27 vs 30 near 28 -> 27; from 27: 36 vs end 40 near 37 -> 36
    assert.deepEqual(starts(planSegments([v3], { targetDuration: 10 })), [0, 9, 18, 27, 36]);
  });

  it('irregular GOPs give irregular slots, never starting mid-GOP', () => {
    const keys = [0, 0.7, 3, 9.5, 11, 25, 26, 40];
    const v = video({ seconds: 45, keyframes: keys });
    const plan = planSegments([v], { targetDuration: 10 });
    // 0 -> 9.5 (nearest 10) -> 25 (nearest 19.5 among 11,25) -> 40 (nearest 35 among 26,40) -> end (45 is nearest 50)
    assert.deepEqual(starts(plan), [0, 9.5, 25, 40]);
    assert.deepEqual(validatePlan([v], plan), []);
    for (const s of plan.slots) assert.ok(keys.includes(Math.round(s.startTime * 10) / 10));
  });

  it('a GOP longer than the target gives one long slot; end of stream avoids a tiny tail', () => {
    const v = video({ seconds: 31, keyframes: [0, 24, 30] });
    const plan = planSegments([v], { targetDuration: 10 });
    assert.deepEqual(starts(plan), [0, 24]);
    assert.equal(plan.slots[1]!.durationTime, 7);
  });

  it('single slot when the video is shorter than the target', () => {
    const v = video({ seconds: 4, keyframes: [0, 2] });
    const plan = planSegments([v], { targetDuration: 10 });
    assert.equal(plan.slots.length, 1);
    assert.equal(plan.slots[0]!.tracks[0]!.last, v.samples.count - 1);
  });

  it('video not starting on a sync sample: the leading frames are skipped, audio follows', () => {
    const base = video({ seconds: 30, keyframes: regularKeys(30, 2) });
    const sync = base.samples.sync.slice();
    sync[0] = 0; // first keyframe at frame 5 instead
    sync[5] = 1;
    const v: PlanTrackInput = { ...base, samples: { ...base.samples, sync } };
    const a = audio({ seconds: 30 });
    const plan = planSegments([v, a], { targetDuration: 10 });
    assert.deepEqual(validatePlan([v, a], plan), []);
    assert.equal(plan.slots[0]!.tracks[0]!.first, 5);
    assert.equal(plan.slots[0]!.tracks[0]!.start, 5 * FRAME);
    // audio starts at the frame nearest to 5/30 s = 0.1667 s: frame 8 (0.1707 s)
    assert.equal(plan.slots[0]!.tracks[1]!.first, 8);
    assert.deepEqual(plan.skipped, [5, 8]);
    assert.deepEqual(starts(plan).slice(1), [10, 20]);
  });

  it('is configurable (target 4 s)', () => {
    const v = video({ seconds: 20, keyframes: regularKeys(20, 1) });
    assert.deepEqual(starts(planSegments([v], { targetDuration: 4 })), [0, 4, 8, 12, 16]);
  });
});

describe('planner: audio alignment', () => {
  it('cuts audio at the frame nearest to each video boundary, contiguous and complete', () => {
    const v = video({ seconds: 60, keyframes: regularKeys(60, 2) });
    const a = audio({ seconds: 60 });
    const plan = planSegments([v, a], { targetDuration: 10 });
    assert.deepEqual(validatePlan([v, a], plan), []);
    const frame = 1024 / 48000;
    for (const slot of plan.slots) {
      const vs = slot.tracks[0]!;
      const as = slot.tracks[1]!;
      const vt = vs.start / VTS;
      const at = as.start / 48000;
      assert.ok(Math.abs(vt - at) <= frame / 2 + 1e-9, `video ${vt} audio ${at}`);
    }
    // 10 s = 468.75 frames -> frame 469 (10.0053 s) is nearer than 468 (9.984 s)
    assert.equal(plan.slots[1]!.tracks[1]!.first, 469);
    assert.equal(plan.slots[1]!.tracks[1]!.start, 469 * 1024);
    // durations are sums of sample durations and the timeline is contiguous
    let next = 0;
    for (const slot of plan.slots) {
      assert.equal(slot.tracks[1]!.start, next);
      assert.equal(slot.tracks[1]!.duration, (slot.tracks[1]!.last - slot.tracks[1]!.first + 1) * 1024);
      next += slot.tracks[1]!.duration;
    }
  });

  it('compares tracks on the presentation timeline (presentation time offsets)', () => {
    // video media time 1024 (B-frame delay) is presentation 0; audio priming 2048 samples
    const v = video({ seconds: 30, keyframes: regularKeys(30, 1), pto: 1024 });
    const a = audio({ seconds: 30, pto: 2048 });
    const plan = planSegments([v, a], { targetDuration: 10 });
    for (const slot of plan.slots.slice(1)) {
      const vt = (slot.tracks[0]!.start - 1024) / VTS;
      const at = (slot.tracks[1]!.start - 2048) / 48000;
      assert.ok(Math.abs(vt - at) <= 1024 / 48000 / 2 + 1e-9, `video ${vt} audio ${at}`);
    }
  });

  it('audio shorter than video: no slot without audio (the tail is merged)', () => {
    const v = video({ seconds: 30, keyframes: regularKeys(30, 2) });
    const a = audio({ seconds: 12 });
    const plan = planSegments([v, a], { targetDuration: 10 });
    assert.deepEqual(validatePlan([v, a], plan), []);
    for (const slot of plan.slots) assert.ok(slot.tracks[1]!.last >= slot.tracks[1]!.first);
    assert.deepEqual(starts(plan), [0, 10]);
  });

  it('audio starting late: the first cut moves until audio exists on both sides', () => {
    const v = video({ seconds: 30, keyframes: regularKeys(30, 2) });
    const a = audio({ seconds: 14, pto: -16 * 48000 }); // audio presentation starts at 16 s
    const plan = planSegments([v, a], { targetDuration: 10 });
    assert.deepEqual(validatePlan([v, a], plan), []);
    assert.ok(plan.slots.length >= 2);
    assert.ok(plan.slots[1]!.startTime >= 16, `second slot at ${plan.slots[1]!.startTime}`);
  });
});

describe('planner: byte cap', () => {
  it('a high bitrate source gets shorter slots, each under the cap', () => {
    // 2 s GOP = 50 kB + 59 x 10 kB = 640 kB (+ 1 kB of trun) -> 2 GOPs fit in 1.5 MB, 3 don't
    const v = video({ seconds: 40, keyframes: regularKeys(40, 2), keyBytes: 50_000, frameBytes: 10_000 });
    const a = audio({ seconds: 40 });
    const cap = 1_500_000;
    const plan = planSegments([v, a], { targetDuration: 10, maxSegmentBytes: cap });
    assert.deepEqual(validatePlan([v, a], plan), []);
    assert.deepEqual(starts(plan), [0, 4, 8, 12, 16, 20, 24, 28, 32, 36]);
    for (const s of plan.slots) assert.ok(s.bytes <= cap, `slot ${s.startTime} has ${s.bytes} bytes`);
    assert.deepEqual(plan.oversizedSlots, []);
    // without the cap: 10 s slots
    assert.deepEqual(starts(planSegments([v, a], { targetDuration: 10 })), [0, 10, 20, 30]);
  });

  it('a GOP bigger than the cap cannot be split: one GOP per slot, reported as oversized', () => {
    const v = video({ seconds: 12, keyframes: regularKeys(12, 2), keyBytes: 50_000, frameBytes: 10_000 });
    const plan = planSegments([v], { targetDuration: 10, maxSegmentBytes: 300_000 });
    assert.deepEqual(starts(plan), [0, 2, 4, 6, 8, 10]);
    assert.equal(plan.oversizedSlots.length, 6);
    assert.deepEqual(validatePlan([v], plan), []);
  });
});

describe('size arithmetic', () => {
  it('moof is 84 + 16 per sample, +4 with a 64-bit tfdt; mdat is 8 + payload', () => {
    assert.equal(moofSize(1, 0), 100);
    assert.equal(moofSize(300, 123456), 84 + 4800);
    assert.equal(moofSize(300, 2 ** 32), 84 + 4800 + 4);
    assert.equal(moofSize(300, 2 ** 32 - 1), 84 + 4800);
    assert.equal(fragmentSize(10, 1000, 0), 84 + 160 + 8 + 1000);
    assert.throws(() => moofSize(0, 0));
  });

  it('plan sizes are fragmentSize of each track segment', () => {
    const v = video({ seconds: 20, keyframes: regularKeys(20, 2) });
    const a = audio({ seconds: 20 });
    const plan = planSegments([v, a], { targetDuration: 10 });
    for (const slot of plan.slots) {
      slot.tracks.forEach((seg, t) => {
        const tab = [v, a][t]!.samples;
        let payload = 0;
        for (let i = seg.first; i <= seg.last; i++) payload += tab.size[i]!;
        assert.equal(seg.size, fragmentSize(seg.last - seg.first + 1, payload, seg.start));
      });
      assert.equal(slot.bytes, slot.tracks.reduce((s, x) => s + x.size, 0));
    }
  });
});
