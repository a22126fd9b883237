/**
 * Segment planner: decides where each slot starts, for every track, from the sample tables only.
 * Pure (no I/O, no mp4box) so it can be unit-tested on synthetic GOP structures.
 *
 * Rules
 *  - The lead track is the video track (or the first track if there is no video).
 *  - Every slot starts on a lead-track sync sample: the sync sample whose time is nearest to
 *    `slotStart + targetDuration` (so irregular GOPs give irregular slots, never a slot starting
 *    mid-GOP). The end of the stream also counts as a candidate so we don't leave a tiny tail.
 *  - Byte cap: if the slot (all tracks) would exceed `maxSegmentBytes`, the latest earlier sync
 *    sample that fits is used instead. A single GOP larger than the cap cannot be split without
 *    re-encoding; it becomes one (oversized) slot and is reported in `oversizedSlots`.
 *  - Other tracks (audio) are cut at the sample whose start time is nearest to the lead cut
 *    time, times being compared on the presentation timeline `(dts - pto) / timescale`.
 *  - Every track has at least one sample in every slot: a cut that would leave a track empty
 *    is moved to a later sync sample, or dropped (the tail is merged into the last slot).
 *  - If the video does not start with a sync sample (open GOP), the frames before the first
 *    sync sample can't be decoded anyway and are left out (`skipped`).
 */
import { fragmentSize } from './fragment-size.ts';

export interface SampleTable {
  readonly count: number;
  /** decode timestamps in the track's timescale, dts[i+1] == dts[i] + duration[i] */
  readonly dts: Float64Array;
  readonly duration: Float64Array;
  readonly size: Float64Array;
  /** 1 = sync sample (random access point) */
  readonly sync: Uint8Array;
}

export type TrackKind = 'video' | 'audio';

export interface PlanTrackInput {
  id: number;
  kind: TrackKind;
  timescale: number;
  /** presentation time offset in the track timescale (media time of presentation 0) */
  pto: number;
  samples: SampleTable;
}

export interface PlanOptions {
  /** target slot duration in seconds */
  targetDuration: number;
  /** cap on the bytes of one slot, all tracks together */
  maxSegmentBytes: number;
}

export const DEFAULT_PLAN_OPTIONS: PlanOptions = {
  targetDuration: 4,
  maxSegmentBytes: 16 * 1024 * 1024,
};

/**
 * Without a duration from the user, a part aims at about this many bytes (all tracks): a seek
 * waits for one part over the uploader's link, ~1 s at 8 Mbit/s; longer parts where the bitrate
 * is low cost fewer requests for the same wait (docs/benchmarks.md, "Part duration").
 */
export const PART_TARGET_BYTES = 1_000_000;
/** the bounds of the automatic part duration, seconds */
export const AUTO_DURATION_MIN = 2;
export const AUTO_DURATION_MAX = 8;

/**
 * The default part duration for these tracks: PART_TARGET_BYTES at the file's average bitrate,
 * whole seconds in [AUTO_DURATION_MIN, AUTO_DURATION_MAX]. The CLI computes the same
 * (cli/src/planner.rs, `auto_target_duration`; the shared vectors pin both): integer sums, then
 * one multiplication, one division and a floor, in this order.
 */
export function autoTargetDuration(tracks: readonly PlanTrackInput[]): number {
  let bytes = 0;
  let seconds = 0;
  for (const t of tracks) {
    let ticks = 0;
    for (let i = 0; i < t.samples.count; i++) {
      bytes += t.samples.size[i]!;
      ticks += t.samples.duration[i]!;
    }
    if (t.timescale > 0) seconds = Math.max(seconds, ticks / t.timescale);
  }
  if (!(bytes > 0 && seconds > 0)) return DEFAULT_PLAN_OPTIONS.targetDuration;
  return Math.min(AUTO_DURATION_MAX, Math.max(AUTO_DURATION_MIN, Math.floor((PART_TARGET_BYTES * seconds) / bytes)));
}

/** What a user who sets nothing gets: the automatic part duration, the default byte cap. */
export function defaultPlanOptions(tracks: readonly PlanTrackInput[]): PlanOptions {
  return { ...DEFAULT_PLAN_OPTIONS, targetDuration: autoTargetDuration(tracks) };
}

export interface TrackSegment {
  /** first sample index (inclusive) */
  first: number;
  /** last sample index (inclusive) */
  last: number;
  /** tfdt baseMediaDecodeTime, track timescale */
  start: number;
  /** sum of the sample durations, track timescale */
  duration: number;
  /** exact byte size of the media segment file (moof + mdat) */
  size: number;
}

export interface PlanSlot {
  /** one entry per input track, same order */
  tracks: TrackSegment[];
  /** seconds on the presentation timeline of the lead track */
  startTime: number;
  durationTime: number;
  bytes: number;
}

export interface Plan {
  options: PlanOptions;
  leadTrack: number;
  /** samples skipped at the start of each track (lead track not starting on a sync sample) */
  skipped: number[];
  slots: PlanSlot[];
  oversizedSlots: number[];
  totalBytes: number;
}

/** Build a SampleTable from plain arrays (tests, small inputs). dts is derived from durations if omitted. */
export function makeSampleTable(input: {
  duration: ArrayLike<number>;
  size: ArrayLike<number>;
  sync: ArrayLike<boolean | number>;
  dts?: ArrayLike<number>;
  startDts?: number;
}): SampleTable {
  const count = input.duration.length;
  if (input.size.length !== count || input.sync.length !== count) throw new Error('sample table arrays differ in length');
  const dts = new Float64Array(count);
  const duration = new Float64Array(count);
  const size = new Float64Array(count);
  const sync = new Uint8Array(count);
  let t = input.startDts ?? 0;
  for (let i = 0; i < count; i++) {
    duration[i] = input.duration[i] ?? 0;
    size[i] = input.size[i] ?? 0;
    sync[i] = input.sync[i] ? 1 : 0;
    dts[i] = input.dts ? (input.dts[i] ?? 0) : t;
    t += duration[i] ?? 0;
  }
  return { count, dts, duration, size, sync };
}

class TrackIndex {
  readonly cumBytes: Float64Array;
  readonly end: number;
  constructor(readonly track: PlanTrackInput) {
    const s = track.samples;
    this.cumBytes = new Float64Array(s.count + 1);
    for (let i = 0; i < s.count; i++) this.cumBytes[i + 1] = (this.cumBytes[i] ?? 0) + (s.size[i] ?? 0);
    const last = s.count - 1;
    this.end = s.count > 0 ? (s.dts[last] ?? 0) + (s.duration[last] ?? 0) : 0;
  }
  /** presentation time (seconds) of sample i; i == count means end of track */
  time(i: number): number {
    const s = this.track.samples;
    const media = i >= s.count ? this.end : (s.dts[i] ?? 0);
    return (media - this.track.pto) / this.track.timescale;
  }
  bytes(from: number, to: number): number {
    return (this.cumBytes[to] ?? 0) - (this.cumBytes[from] ?? 0);
  }
  /**
   * index in [0, count] of the sample boundary nearest to t (ties: earlier); count stands for
   * the end of the track, so a time past (or nearer to) the end gives count
   */
  nearest(t: number): number {
    const n = this.track.samples.count;
    let lo = 0;
    let hi = n; // first boundary with time >= t, in [0, n]
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.time(mid) < t) lo = mid + 1;
      else hi = mid;
    }
    if (lo > n) return n;
    if (lo > 0 && t - this.time(lo - 1) <= this.time(lo) - t) return lo - 1;
    return lo;
  }
}

export function planSegments(tracks: PlanTrackInput[], options: Partial<PlanOptions> = {}): Plan {
  const opts: PlanOptions = { ...DEFAULT_PLAN_OPTIONS, ...options };
  if (!(opts.targetDuration > 0)) throw new RangeError('targetDuration must be > 0');
  if (!(opts.maxSegmentBytes > 0)) throw new RangeError('maxSegmentBytes must be > 0');
  if (tracks.length === 0) throw new Error('no tracks to plan');
  for (const t of tracks) {
    if (t.samples.count === 0) throw new Error(`track ${t.id} has no samples`);
    if (!(t.timescale > 0)) throw new Error(`track ${t.id} has no timescale`);
  }
  const leadPos = Math.max(0, tracks.findIndex((t) => t.kind === 'video'));
  const idx = tracks.map((t) => new TrackIndex(t));
  const lead = idx[leadPos]!;
  const leadSamples = lead.track.samples;

  const syncList: number[] = [];
  for (let i = 1; i < leadSamples.count; i++) if (leadSamples.sync[i]) syncList.push(i);

  // A lead track that does not start on a sync sample (open GOP at the start) can't start a
  // segment there: its leading non-sync samples are skipped (the other tracks start at the
  // nearest sample to the first sync sample).
  let firstSync = 0;
  while (firstSync < leadSamples.count && !leadSamples.sync[firstSync]) firstSync++;
  if (firstSync >= leadSamples.count) firstSync = 0;
  const others = idx.map((_, i) => i).filter((i) => i !== leadPos);
  // boundaries[t] = start sample index of each slot for track t
  const boundaries: number[][] = tracks.map((_, t) => {
    if (t === leadPos || firstSync === 0) return [0];
    return [Math.min(idx[t]!.nearest(lead.time(firstSync)), tracks[t]!.samples.count - 1)];
  });
  boundaries[leadPos] = [firstSync];

  /** other-track boundaries for a lead cut at sample c, or null if some track would get an empty slot */
  const otherCuts = (c: number): { cuts: Map<number, number>; exhausted: boolean } | null => {
    const tc = lead.time(c);
    const cuts = new Map<number, number>();
    for (const o of others) {
      const j = idx[o]!.nearest(tc);
      const prev = boundaries[o]![boundaries[o]!.length - 1]!;
      if (j >= idx[o]!.track.samples.count) return { cuts, exhausted: true };
      if (j <= prev) return null;
      cuts.set(o, j);
    }
    return { cuts, exhausted: false };
  };
  const slotBytes = (cur: number, c: number): number => {
    let b = lead.bytes(cur, c);
    const t0 = lead.time(cur);
    const t1 = lead.time(c);
    for (const o of others) b += idx[o]!.bytes(idx[o]!.nearest(t0), idx[o]!.nearest(t1));
    return b;
  };

  let cur = firstSync;
  let k0 = 0; // first index into syncList with syncList[k] > cur
  for (;;) {
    while (k0 < syncList.length && syncList[k0]! <= cur) k0++;
    if (k0 >= syncList.length) break;
    const target = lead.time(cur) + opts.targetDuration;
    // first candidate at or after target
    let lo = k0;
    let hi = syncList.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (lead.time(syncList[mid]!) < target) lo = mid + 1;
      else hi = mid;
    }
    // candidates: syncList[lo-1] (before target), syncList[lo] (after), or end of stream
    let choice: number; // index into syncList, or syncList.length for "end of stream"
    const before = lo - 1 >= k0 ? lo - 1 : -1;
    const afterTime = lo < syncList.length ? lead.time(syncList[lo]!) : lead.time(leadSamples.count);
    if (before >= 0 && target - lead.time(syncList[before]!) <= afterTime - target) choice = before;
    else choice = lo;
    // byte cap: walk back to the latest sync sample that keeps the slot under the cap
    const cutSample = (k: number): number => (k >= syncList.length ? leadSamples.count : syncList[k]!);
    if (slotBytes(cur, cutSample(choice)) > opts.maxSegmentBytes) {
      let a = k0;
      let b = Math.min(choice, syncList.length); // search k in [k0, choice) with bytes <= cap, latest
      let best = -1;
      while (a < b) {
        const mid = (a + b) >>> 1;
        if (slotBytes(cur, cutSample(mid)) <= opts.maxSegmentBytes) {
          best = mid;
          a = mid + 1;
        } else b = mid;
      }
      choice = best >= 0 ? best : k0;
    }
    if (choice >= syncList.length) break; // end of stream is the best cut: last slot runs to the end
    // make sure every other track gets at least one sample on both sides of the cut
    let k = choice;
    let accepted: Map<number, number> | null = null;
    let stop = false;
    for (; k < syncList.length; k++) {
      const r = otherCuts(syncList[k]!);
      if (r === null) continue;
      if (r.exhausted) {
        stop = true;
        break;
      }
      accepted = r.cuts;
      break;
    }
    if (stop || accepted === null) break;
    const c = syncList[k]!;
    boundaries[leadPos]!.push(c);
    for (const [o, j] of accepted) boundaries[o]!.push(j);
    cur = c;
  }

  const slotCount = boundaries[leadPos]!.length;
  const slots: PlanSlot[] = [];
  const oversizedSlots: number[] = [];
  let totalBytes = 0;
  for (let s = 0; s < slotCount; s++) {
    const segs: TrackSegment[] = [];
    let bytes = 0;
    for (let t = 0; t < tracks.length; t++) {
      const tab = tracks[t]!.samples;
      const first = boundaries[t]![s]!;
      const next = s + 1 < slotCount ? boundaries[t]![s + 1]! : tab.count;
      const last = next - 1;
      let duration = 0;
      for (let i = first; i <= last; i++) duration += tab.duration[i] ?? 0;
      const start = tab.dts[first] ?? 0;
      const payload = idx[t]!.bytes(first, next);
      const size = fragmentSize(next - first, payload, start);
      bytes += size;
      segs.push({ first, last, start, duration, size });
    }
    const leadSeg = segs[leadPos]!;
    const startTime = lead.time(leadSeg.first);
    const endTime = lead.time(leadSeg.last + 1);
    if (bytes > opts.maxSegmentBytes) oversizedSlots.push(s);
    totalBytes += bytes;
    slots.push({ tracks: segs, startTime, durationTime: endTime - startTime, bytes });
  }
  const skipped = boundaries.map((b) => b[0] ?? 0);
  return { options: opts, leadTrack: lead.track.id, skipped, slots, oversizedSlots, totalBytes };
}

/** Consistency checks used by tests and as a guard before creating a session. Returns problems found. */
export function validatePlan(tracks: PlanTrackInput[], plan: Plan): string[] {
  const problems: string[] = [];
  tracks.forEach((track, t) => {
    let expectNext = plan.skipped[t] ?? 0;
    let expectStart: number | null = null;
    plan.slots.forEach((slot, s) => {
      const seg = slot.tracks[t];
      if (!seg) {
        problems.push(`slot ${s} lacks track ${track.id}`);
        return;
      }
      if (seg.first !== expectNext) problems.push(`track ${track.id} slot ${s} starts at sample ${seg.first}, expected ${expectNext}`);
      if (seg.last < seg.first) problems.push(`track ${track.id} slot ${s} is empty`);
      if (expectStart !== null && seg.start !== expectStart) problems.push(`track ${track.id} slot ${s} timeline gap`);
      if (track.kind === 'video' && !track.samples.sync[seg.first]) problems.push(`track ${track.id} slot ${s} starts on a non-sync sample`);
      expectNext = seg.last + 1;
      expectStart = seg.start + seg.duration;
    });
    if (expectNext !== track.samples.count) problems.push(`track ${track.id}: plan covers ${expectNext} of ${track.samples.count} samples`);
  });
  return problems;
}
