/**
 * A track's samples as a few typed arrays — never an object per sample (a 3-hour recording has
 * ~1 M samples; mp4box's sample objects cost ~200 bytes each plus GC). Read from the `stbl` boxes
 * of a regular MP4, or from the `moof`/`traf`/`trun` boxes of a fragmented one; the segmenter
 * writes each part's `moof` straight from these arrays (`writeMoof`).
 */
import type { SampleTable } from './planner.ts';

/** What the planner needs (SampleTable) plus where each sample's bytes are and its composition offset. */
export interface SampleStore extends SampleTable {
  /** absolute file offset of each sample's bytes */
  readonly offset: Float64Array;
  /** composition time offset, cts - dts (may be negative) */
  readonly cto: Float64Array;
}

/** Grows typed arrays as samples are appended (fragmented files: the count is known only at the end). */
export class SampleStoreBuilder {
  count = 0;
  private cap = 0;
  private a: { dts: Float64Array; duration: Float64Array; size: Float64Array; offset: Float64Array; cto: Float64Array; sync: Uint8Array } = { dts: new Float64Array(0), duration: new Float64Array(0), size: new Float64Array(0), offset: new Float64Array(0), cto: new Float64Array(0), sync: new Uint8Array(0) };

  private grow(min: number): void {
    const cap = Math.max(min, this.cap * 2, 1024);
    const f = (old: Float64Array): Float64Array => {
      const n = new Float64Array(cap);
      n.set(old.subarray(0, this.count));
      return n;
    };
    const sync = new Uint8Array(cap);
    sync.set(this.a.sync.subarray(0, this.count));
    this.a = { dts: f(this.a.dts), duration: f(this.a.duration), size: f(this.a.size), offset: f(this.a.offset), cto: f(this.a.cto), sync };
    this.cap = cap;
  }

  push(dts: number, duration: number, size: number, offset: number, cto: number, sync: boolean): void {
    if (this.count >= this.cap) this.grow(this.count + 1);
    const i = this.count++;
    this.a.dts[i] = dts;
    this.a.duration[i] = duration;
    this.a.size[i] = size;
    this.a.offset[i] = offset;
    this.a.cto[i] = cto;
    this.a.sync[i] = sync ? 1 : 0;
  }

  /** The store, trimmed to its count (copies once, so no spare capacity stays allocated). */
  finish(): SampleStore {
    const n = this.count;
    return {
      count: n,
      dts: this.a.dts.slice(0, n),
      duration: this.a.duration.slice(0, n),
      size: this.a.size.slice(0, n),
      offset: this.a.offset.slice(0, n),
      cto: this.a.cto.slice(0, n),
      sync: this.a.sync.slice(0, n),
    };
  }
}

/** The stbl boxes as mp4box parses them (only the fields read here). */
export interface StblBoxes {
  sizes: ArrayLike<number>;
  chunkOffsets: ArrayLike<number>;
  stsc: { first_chunk: ArrayLike<number>; samples_per_chunk: ArrayLike<number>; sample_description_index: ArrayLike<number> };
  stts: { sample_counts: ArrayLike<number>; sample_deltas: ArrayLike<number> };
  ctts?: { sample_counts: ArrayLike<number>; sample_offsets: ArrayLike<number> };
  stss?: { sample_numbers: ArrayLike<number> };
  /** media duration (mdhd), for the last sample */
  mediaDuration: number;
}

export interface StblResult {
  store: SampleStore;
  /** end of the last byte any sample refers to */
  maxEnd: number;
  /** samples use more than one sample description */
  mixedDescriptions: boolean;
}

/**
 * The sample table read from the stbl boxes, exactly as mp4box's buildTrakSampleLists derives its
 * sample objects (same chunk walk, same stts/ctts run indexing — including its quirk of giving
 * sample j-1 the delta of sample j's stts run — and the last sample lasting up to the media
 * duration), so the parts match what mp4box's createFragment would write (asserted in the tests).
 */
export function storeFromStbl(b: StblBoxes): StblResult {
  const { sizes, stsc, stts, ctts, stss } = b;
  const count = sizes.length;
  const dts = new Float64Array(count);
  const duration = new Float64Array(count);
  const size = new Float64Array(count);
  const offset = new Float64Array(count);
  const cto = new Float64Array(count);
  const sync = new Uint8Array(count);
  let chunkIndex = 1;
  let chunkRun = 0;
  let lastChunkInRun = Infinity;
  let lastSampleInChunk = 0;
  let offsetInChunk = 0;
  let lastSampleInSttsRun = -1;
  let sttsRun = -1;
  let lastSampleInCttsRun = -1;
  let cttsRun = -1;
  let stssIndex = 0;
  let maxEnd = 0;
  let firstDescription = 0;
  let mixedDescriptions = false;
  for (let j = 0; j < count; j++) {
    const sz = sizes[j]!;
    size[j] = sz;
    if (j === 0) {
      chunkIndex = 1;
      chunkRun = 0;
      lastSampleInChunk = stsc.samples_per_chunk[0]!;
      offsetInChunk = 0;
      lastChunkInRun = stsc.first_chunk.length > 1 ? stsc.first_chunk[1]! - 1 : Infinity;
    } else if (j >= lastSampleInChunk) {
      chunkIndex++;
      offsetInChunk = 0;
      if (chunkIndex > lastChunkInRun) {
        chunkRun++;
        lastChunkInRun = chunkRun + 1 < stsc.first_chunk.length ? stsc.first_chunk[chunkRun + 1]! - 1 : Infinity;
      }
      lastSampleInChunk += stsc.samples_per_chunk[chunkRun]!;
    }
    const description = stsc.sample_description_index[chunkRun]! - 1;
    if (j === 0) firstDescription = description;
    else if (description !== firstDescription) mixedDescriptions = true;
    const at = b.chunkOffsets[chunkIndex - 1]! + offsetInChunk;
    offset[j] = at;
    offsetInChunk += sz;
    maxEnd = Math.max(maxEnd, at + sz);
    if (j > lastSampleInSttsRun) {
      sttsRun++;
      if (lastSampleInSttsRun < 0) lastSampleInSttsRun = 0;
      lastSampleInSttsRun += stts.sample_counts[sttsRun]!;
    }
    if (j > 0) {
      duration[j - 1] = stts.sample_deltas[sttsRun]!;
      dts[j] = dts[j - 1]! + duration[j - 1]!;
    }
    if (ctts) {
      if (j >= lastSampleInCttsRun) {
        cttsRun++;
        if (lastSampleInCttsRun < 0) lastSampleInCttsRun = 0;
        lastSampleInCttsRun += ctts.sample_counts[cttsRun]!;
      }
      cto[j] = ctts.sample_offsets[cttsRun]!;
    }
    if (stss) {
      if (j === stss.sample_numbers[stssIndex]! - 1) {
        sync[j] = 1;
        stssIndex++;
      }
    } else {
      sync[j] = 1;
    }
  }
  if (count > 0) duration[count - 1] = Math.max(b.mediaDuration - dts[count - 1]!, 0);
  return { store: { count, dts, duration, size, offset, cto, sync }, maxEnd, mixedDescriptions };
}

const TFHD_BASE_DATA_OFFSET = 0x1;
const TFHD_SAMPLE_DESCRIPTION_INDEX = 0x2;
const TFHD_DEFAULT_DURATION = 0x8;
const TFHD_DEFAULT_SIZE = 0x10;
const TFHD_DEFAULT_FLAGS = 0x20;
const TFHD_DEFAULT_BASE_IS_MOOF = 0x20000;
const TRUN_DATA_OFFSET = 0x1;
const TRUN_FIRST_SAMPLE_FLAGS = 0x4;
const TRUN_DURATION = 0x100;
const TRUN_SIZE = 0x200;
const TRUN_FLAGS = 0x400;
const TRUN_CTO = 0x800;
const SAMPLE_IS_NON_SYNC = 0x10000;

/** Defaults of a track's fragments (trex in the moov's mvex). */
export interface TrackDefaults {
  duration: number;
  size: number;
  flags: number;
  descriptionIndex: number;
}

export class FragmentError extends Error {}

/** What reading the fragments found, per track id. */
export interface FragmentTrack {
  builder: SampleStoreBuilder;
  /** decode time at which the next fragment continues when it has no tfdt */
  nextDts: number;
  maxEnd: number;
  descriptions: Set<number>;
}

interface BoxAt {
  type: string;
  start: number;
  end: number;
  body: number;
}

function* children(v: DataView, from: number, to: number): Generator<BoxAt> {
  let p = from;
  while (p + 8 <= to) {
    let size = v.getUint32(p);
    const type = String.fromCharCode(v.getUint8(p + 4), v.getUint8(p + 5), v.getUint8(p + 6), v.getUint8(p + 7));
    let body = p + 8;
    if (size === 1) {
      if (p + 16 > to) throw new FragmentError(`'${type}' box header runs past its parent`);
      size = v.getUint32(p + 8) * 2 ** 32 + v.getUint32(p + 12);
      body = p + 16;
    } else if (size === 0) size = to - p;
    if (size < body - p || p + size > to) throw new FragmentError(`'${type}' box at ${p} has a bad size`);
    yield { type, start: p, end: p + size, body };
    p += size;
  }
}

/**
 * Appends the samples of one `moof` (its bytes in `moof`, found at file position `moofStart`) to
 * the tracks in `tracks` (by track id; other tracks' trafs are skipped). Every field read is
 * checked against its box, and sample counts against the box size, so hostile input costs at most
 * the moof's own size.
 */
export function readMoof(moof: Uint8Array, moofStart: number, defaults: Map<number, TrackDefaults>, tracks: Map<number, FragmentTrack>): void {
  const v = new DataView(moof.buffer, moof.byteOffset, moof.byteLength);
  const top = children(v, 0, moof.byteLength).next();
  if (top.done || top.value.type !== 'moof') throw new FragmentError('not a moof box');
  let previousDataEnd = moofStart; // base of a traf without base_data_offset or default-base-is-moof
  let firstTraf = true;
  for (const traf of children(v, top.value.body, top.value.end)) {
    if (traf.type !== 'traf') continue;
    let trackId = -1;
    let tfhdFlags = 0;
    let base = 0;
    let def: TrackDefaults | undefined;
    let tfdt: number | null = null;
    const truns: BoxAt[] = [];
    for (const box of children(v, traf.body, traf.end)) {
      const need = (n: number): void => {
        if (box.body + n > box.end) throw new FragmentError(`'${box.type}' box is too short`);
      };
      if (box.type === 'tfhd') {
        need(8);
        tfhdFlags = v.getUint32(box.body) & 0xffffff;
        trackId = v.getUint32(box.body + 4);
        const d = defaults.get(trackId);
        def = d ? { ...d } : { duration: 0, size: 0, flags: 0, descriptionIndex: 1 };
        let p = box.body + 8;
        const take = (bytes: 4 | 8): number => {
          if (p + bytes > box.end) throw new FragmentError('tfhd box is too short');
          const x = bytes === 8 ? v.getUint32(p) * 2 ** 32 + v.getUint32(p + 4) : v.getUint32(p);
          p += bytes;
          return x;
        };
        if (tfhdFlags & TFHD_BASE_DATA_OFFSET) base = take(8);
        else if (tfhdFlags & TFHD_DEFAULT_BASE_IS_MOOF || firstTraf) base = moofStart;
        else base = previousDataEnd;
        if (tfhdFlags & TFHD_SAMPLE_DESCRIPTION_INDEX) def.descriptionIndex = take(4);
        if (tfhdFlags & TFHD_DEFAULT_DURATION) def.duration = take(4);
        if (tfhdFlags & TFHD_DEFAULT_SIZE) def.size = take(4);
        if (tfhdFlags & TFHD_DEFAULT_FLAGS) def.flags = take(4);
      } else if (box.type === 'tfdt') {
        need(8);
        const version = v.getUint8(box.body);
        if (version === 1) {
          need(12);
          tfdt = v.getUint32(box.body + 4) * 2 ** 32 + v.getUint32(box.body + 8);
        } else tfdt = v.getUint32(box.body + 4);
      } else if (box.type === 'trun') truns.push(box);
    }
    firstTraf = false;
    if (trackId < 0 || !def) throw new FragmentError('a traf has no tfhd');
    const track = tracks.get(trackId);
    let dataPos = base;
    let dts = tfdt ?? track?.nextDts ?? 0;
    for (const trun of truns) {
      if (trun.body + 8 > trun.end) throw new FragmentError('trun box is too short');
      const version = v.getUint8(trun.body);
      const flags = v.getUint32(trun.body) & 0xffffff;
      const count = v.getUint32(trun.body + 4);
      let p = trun.body + 8;
      if (flags & TRUN_DATA_OFFSET) {
        if (p + 4 > trun.end) throw new FragmentError('trun box is too short');
        dataPos = base + v.getInt32(p);
        p += 4;
      }
      let firstFlags: number | null = null;
      if (flags & TRUN_FIRST_SAMPLE_FLAGS) {
        if (p + 4 > trun.end) throw new FragmentError('trun box is too short');
        firstFlags = v.getUint32(p);
        p += 4;
      }
      const perSample = 4 * [TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTO].filter((f) => flags & f).length;
      if (count * perSample > trun.end - p || (perSample === 0 && count > 10_000_000)) throw new FragmentError(`trun declares ${count} samples, more than it holds`);
      for (let i = 0; i < count; i++) {
        const duration = flags & TRUN_DURATION ? v.getUint32((p += 4) - 4) : def.duration;
        const size = flags & TRUN_SIZE ? v.getUint32((p += 4) - 4) : def.size;
        let sampleFlags = flags & TRUN_FLAGS ? v.getUint32((p += 4) - 4) : def.flags;
        if (i === 0 && firstFlags !== null) sampleFlags = firstFlags;
        const cto = flags & TRUN_CTO ? (version === 0 ? v.getUint32((p += 4) - 4) : v.getInt32((p += 4) - 4)) : 0;
        if (track) {
          track.builder.push(dts, duration, size, dataPos, cto, (sampleFlags & SAMPLE_IS_NON_SYNC) === 0);
          track.maxEnd = Math.max(track.maxEnd, dataPos + size);
        }
        dts += duration;
        dataPos += size;
      }
    }
    previousDataEnd = dataPos;
    if (track) {
      track.nextDts = dts;
      track.descriptions.add(def.descriptionIndex);
    }
  }
}

/** tfdt needs 64 bits past 2^32 - 1 (mp4box writes version 1 then, 4 bytes more). */
const U32 = 2 ** 32;

/**
 * The `moof` + `mdat` header of samples [first, last] of `store`, byte for byte what mp4box's
 * createMoof writes followed by the mdat header (tfhd default-base-is-moof; trun with data offset,
 * per-sample duration, size, flags — sync: 0x02000000, else 0x00010000 — and composition offset;
 * version 1 when an offset is negative), with mfhd.sequence_number = `sequence`. `ctoShift` is
 * subtracted from every composition offset (a folded edit: AnalyzedTrack.compositionShift).
 */
export function writeFragmentHeader(
  store: SampleStore,
  first: number,
  last: number,
  trackId: number,
  sequence: number,
  ctoShift = 0,
): { head: Uint8Array; payload: number } {
  const n = last - first + 1;
  const bmdt = store.dts[first]!;
  const tfdtSize = bmdt >= U32 ? 20 : 16;
  const trunSize = 20 + 16 * n;
  const trafSize = 8 + 16 + tfdtSize + trunSize;
  const moofSize = 8 + 16 + trafSize;
  const head = new Uint8Array(moofSize + 8);
  const v = new DataView(head.buffer);
  let p = 0;
  const box = (size: number, type: string): void => {
    v.setUint32(p, size);
    for (let i = 0; i < 4; i++) head[p + 4 + i] = type.charCodeAt(i);
    p += 8;
  };
  box(moofSize, 'moof');
  box(16, 'mfhd');
  v.setUint32(p, 0);
  v.setUint32(p + 4, sequence);
  p += 8;
  box(trafSize, 'traf');
  box(16, 'tfhd');
  v.setUint32(p, TFHD_DEFAULT_BASE_IS_MOOF);
  v.setUint32(p + 4, trackId);
  p += 8;
  box(tfdtSize, 'tfdt');
  if (tfdtSize === 20) {
    v.setUint32(p, 1 << 24);
    v.setUint32(p + 4, Math.floor(bmdt / U32));
    v.setUint32(p + 8, bmdt % U32);
    p += 12;
  } else {
    v.setUint32(p, 0);
    v.setUint32(p + 4, bmdt);
    p += 8;
  }
  box(trunSize, 'trun');
  let negative = false;
  for (let i = first; i <= last; i++) if (store.cto[i]! - ctoShift < 0) negative = true;
  v.setUint32(p, ((negative ? 1 : 0) << 24) | TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS | TRUN_CTO);
  v.setUint32(p + 4, n);
  v.setUint32(p + 8, moofSize + 8); // data offset from the moof start: just past the mdat header
  p += 12;
  let payload = 0;
  for (let i = first; i <= last; i++) {
    const size = store.size[i]!;
    v.setUint32(p, store.duration[i]!);
    v.setUint32(p + 4, size);
    v.setUint32(p + 8, store.sync[i] ? 0x02000000 : 0x00010000);
    v.setInt32(p + 12, store.cto[i]! - ctoShift);
    p += 16;
    payload += size;
  }
  v.setUint32(p, 8 + payload);
  head.set([0x6d, 0x64, 0x61, 0x74], p + 4); // 'mdat'
  return { head, payload };
}
