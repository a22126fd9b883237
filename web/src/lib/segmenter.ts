/**
 * Builds one media segment (moof + mdat) for one track of one slot, on demand.
 *
 * Two equivalent ways, bit-for-bit identical output (checked on every slot in the unit tests):
 *
 *  - `build()`: mp4box.js `createFragment(trackId, first, last)` over sample data read from the
 *    file with Blob slices. The reference implementation; memory = the segment, a few times.
 *  - `buildSlot()` / `buildBlob()`: the same `moof`, written straight from the track's typed-array
 *    sample store (`writeFragmentHeader`, byte for byte what createFragment writes), then the sample
 *    bytes. No mp4box sample object is involved, so they also work for fragmented sources (whose
 *    moov has no sample tables for mp4box to build objects from). `buildSlot` is what the uploader
 *    sends.
 */
import { DataStream } from 'mp4box';
import type { ISOFile, Sample } from 'mp4box';
import { ensureSampleLists } from './analyze.ts';
import type { Analysis, AnalyzedTrack, ByteSource } from './analyze.ts';
import type { Plan, TrackSegment } from './planner.ts';
import { writeFragmentHeader } from './samples.ts';

/** samples closer than this (bytes) are read with one slice */
const MAX_GAP = 256 * 1024;
/** ...up to this much per slice, so the transient read buffer stays small */
const MAX_RUN = 4 * 1024 * 1024;

interface Run {
  start: number;
  end: number;
  samples: Sample[];
}

function runsOf(samples: Sample[]): Run[] {
  const sorted = samples.slice().sort((a, b) => a.offset - b.offset);
  const runs: Run[] = [];
  let cur: Run | undefined;
  for (const s of sorted) {
    if (cur && s.offset >= cur.end && s.offset - cur.end <= MAX_GAP && s.offset + s.size - cur.start <= MAX_RUN) {
      cur.end = s.offset + s.size;
      cur.samples.push(s);
    } else if (cur && s.offset < cur.end) {
      cur.end = Math.max(cur.end, s.offset + s.size); // overlapping (shouldn't happen, but harmless)
      cur.samples.push(s);
    } else {
      cur = { start: s.offset, end: s.offset + s.size, samples: [s] };
      runs.push(cur);
    }
  }
  return runs;
}

export class SegmentSizeMismatch extends Error {}

export class Segmenter {
  private readonly iso: ISOFile;
  constructor(
    private readonly file: ByteSource,
    private readonly analysis: Analysis,
    private readonly plan: Plan,
  ) {
    this.iso = analysis.iso;
  }

  get slotCount(): number {
    return this.plan.slots.length;
  }

  private locate(slot: number, trackIndex: number): { seg: TrackSegment; track: AnalyzedTrack } {
    const planSlot = this.plan.slots[slot];
    if (!planSlot) throw new RangeError(`slot ${slot} out of range`);
    const seg = planSlot.tracks[trackIndex];
    const track = this.analysis.tracks[trackIndex];
    if (!seg || !track) throw new RangeError(`slot ${slot} has no track #${trackIndex}`);
    return { seg, track };
  }

  /**
   * Reference (tests): mp4box's createFragment over its own sample objects, with the sample data
   * read into memory. Regular (non-fragmented) sources only.
   */
  async build(slot: number, trackIndex: number): Promise<Uint8Array> {
    const { seg, track } = this.locate(slot, trackIndex);
    if (this.analysis.fragmented) throw new Error('the reference builder needs sample tables in the moov');
    ensureSampleLists(this.analysis);
    const samples = track.trak.samples.slice(seg.first, seg.last + 1);
    // a folded edit: createFragment writes cts - dts, so it is shifted here (restored below)
    for (const s of samples) s.cts -= track.compositionShift;
    try {
      for (const run of runsOf(samples)) {
        const buf = await this.file.slice(run.start, run.end).arrayBuffer();
        if (buf.byteLength !== run.end - run.start) throw new Error(`short read at ${run.start}: file changed or unreadable`);
        for (const s of run.samples) {
          // createFragment uses sample.data.buffer as a whole: each sample needs its own ArrayBuffer
          s.data = new Uint8Array(buf.slice(s.offset - run.start, s.offset - run.start + s.size));
          s.alreadyRead = s.size;
        }
      }
      // preallocated to the planned size: no growth copies; `position` tells what was written
      const stream = this.iso.createFragment(track.id, seg.first, seg.last, new DataStream(new ArrayBuffer(seg.size)));
      if (!stream) throw new Error(`mp4box could not build slot ${slot} track ${track.id}`);
      if (stream.getPosition() !== seg.size || stream.byteLength !== seg.size) {
        throw new SegmentSizeMismatch(`slot ${slot} track ${track.id}: built ${stream.getPosition()} bytes, planned ${seg.size}`);
      }
      const out = new Uint8Array(stream.buffer, 0, seg.size);
      patchFragment(out, slot, samples);
      return out;
    } finally {
      for (const s of samples) {
        s.data = undefined;
        s.alreadyRead = 0;
        s.cts += track.compositionShift;
      }
    }
  }

  /** moof + mdat header bytes, and the file byte ranges making up the mdat payload. */
  header(slot: number, trackIndex: number): { head: Uint8Array; ranges: [number, number][]; size: number } {
    const { seg, track } = this.locate(slot, trackIndex);
    const store = track.samples;
    const { head, payload } = writeFragmentHeader(store, seg.first, seg.last, track.id, slot + 1, track.compositionShift);
    const ranges: [number, number][] = [];
    for (let i = seg.first; i <= seg.last; i++) {
      const offset = store.offset[i]!;
      const end = offset + store.size[i]!;
      const last = ranges[ranges.length - 1];
      if (last && last[1] === offset) last[1] = end;
      else ranges.push([offset, end]);
    }
    const size = head.byteLength + payload;
    if (size !== seg.size) throw new SegmentSizeMismatch(`slot ${slot} track ${track.id}: built ${size} bytes, planned ${seg.size}`);
    return { head, ranges, size };
  }

  /**
   * What the uploader sends: the slot's segments for `trackIndexes`, as Blobs holding their bytes.
   * The sample bytes of all those tracks are read with a few large slices of the file (samples
   * closer than MAX_GAP share one read, up to MAX_RUN bytes: interleaved audio and video cost one
   * read); each read's samples go into a Blob at once (the browser keeps Blob bytes outside the
   * page and streams them to the network itself), so the page holds at most one read buffer per
   * slot being built. Bit-identical to `build()`.
   *
   * (Not `buildBlob`'s Blob of file slices: Chromium reads a Blob part by part, ~0.4 ms per part,
   * and that Blob has one part per run of contiguous samples, i.e. one per sample in a file
   * interleaved frame by frame: reading it runs at ~1 MiB/s for low-bitrate video. Nor a plain
   * ArrayBuffer body, which the page itself has to pump to the network.)
   */
  async buildSlot(slot: number, trackIndexes: readonly number[]): Promise<Blob[]> {
    interface Place {
      offset: number;
      size: number;
      track: number;
      /** position in `out` for tracks assembled in memory (samples not in file order) */
      at: number;
    }
    const tracks = trackIndexes.map((t) => {
      const { seg, track } = this.locate(slot, t);
      const store = track.samples;
      const { head, size } = this.header(slot, t);
      let inOrder = true;
      for (let i = seg.first + 1; i <= seg.last; i++) if (store.offset[i]! < store.offset[i - 1]! + store.size[i - 1]!) inOrder = false;
      return { t, seg, store, head, size, inOrder, parts: [head] as BlobPart[], out: inOrder ? null : new Uint8Array(size) };
    });
    const places: Place[] = [];
    tracks.forEach((tr, k) => {
      let at = tr.head.byteLength;
      for (let i = tr.seg.first; i <= tr.seg.last; i++) {
        const size = tr.store.size[i]!;
        places.push({ offset: tr.store.offset[i]!, size, track: k, at });
        at += size;
      }
      if (at !== tr.size) throw new SegmentSizeMismatch(`slot ${slot} track #${tr.t}: ${at} bytes of samples and headers, planned ${tr.size}`);
      tr.out?.set(tr.head, 0);
    });
    places.sort((x, y) => x.offset - y.offset);
    for (let i = 0; i < places.length; ) {
      const start = places[i]!.offset;
      let end = start + places[i]!.size;
      let j = i + 1;
      while (j < places.length) {
        const p = places[j]!;
        if (p.offset - end > MAX_GAP || p.offset + p.size - start > MAX_RUN) break;
        end = Math.max(end, p.offset + p.size);
        j++;
      }
      const buf = new Uint8Array(await this.file.slice(start, end).arrayBuffer());
      if (buf.byteLength !== end - start) throw new Error(`short read at ${start}: file changed or unreadable`);
      // per track, this read's samples (file order = sample order), adjacent ones as one view
      const views: Uint8Array[][] = tracks.map(() => []);
      const lastEnd: number[] = tracks.map(() => -1);
      for (let k = i; k < j; k++) {
        const p = places[k]!;
        const tr = tracks[p.track]!;
        const view = buf.subarray(p.offset - start, p.offset - start + p.size);
        if (tr.out) {
          tr.out.set(view, p.at);
          continue;
        }
        const list = views[p.track]!;
        const prev = list[list.length - 1];
        if (prev && lastEnd[p.track] === p.offset) list[list.length - 1] = buf.subarray(prev.byteOffset, p.offset - start + p.size);
        else list.push(view);
        lastEnd[p.track] = p.offset + p.size;
      }
      views.forEach((list, k) => {
        if (list.length) tracks[k]!.parts.push(new Blob(list as Uint8Array<ArrayBuffer>[]));
      });
      i = j;
    }
    return tracks.map((tr) => {
      const blob = tr.out ? new Blob([tr.out as Uint8Array<ArrayBuffer>], { type: 'video/mp4' }) : new Blob(tr.parts, { type: 'video/mp4' });
      if (blob.size !== tr.size) throw new SegmentSizeMismatch(`slot ${slot} track #${tr.t}: built ${blob.size} bytes, planned ${tr.size}`);
      return blob;
    });
  }

  /** The segment as a Blob whose sample bytes are slices of the source file (read when sent). */
  buildBlob(slot: number, trackIndex: number): Blob {
    if (!(this.file instanceof Blob)) throw new TypeError('buildBlob needs a Blob/File source');
    const file = this.file;
    const { head, ranges, size } = this.header(slot, trackIndex);
    const blob = new Blob([head as Uint8Array<ArrayBuffer>, ...ranges.map(([a, b]) => file.slice(a, b))], { type: 'video/mp4' });
    if (blob.size !== size) throw new SegmentSizeMismatch(`slot ${slot} track #${trackIndex}: blob has ${blob.size} bytes, planned ${size}`);
    return blob;
  }
}

/**
 * Post-process the moof:
 *  - mfhd sequence_number := slot + 1 (mp4box uses a running counter, which depends on the order
 *    segments happen to be generated in; this makes every segment reproducible);
 *  - trun version 1 when a composition offset is negative (signed offsets; same size).
 */
function patchFragment(out: Uint8Array, slot: number, samples: Sample[]): void {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  // moof(8) mfhd: size(4) 'mfhd'(4) version/flags(4) sequence_number(4)
  if (String.fromCharCode(out[12]!, out[13]!, out[14]!, out[15]!) !== 'mfhd') throw new Error('unexpected fragment layout');
  v.setUint32(20, slot + 1);
  if (samples.some((s) => s.cts < s.dts)) {
    // moof(8) mfhd(16) traf(8) tfhd(16) tfdt(16|20) trun
    const tfdtSize = v.getUint32(8 + 16 + 8 + 16);
    const trunAt = 8 + 16 + 8 + 16 + tfdtSize;
    if (String.fromCharCode(out[trunAt + 4]!, out[trunAt + 5]!, out[trunAt + 6]!, out[trunAt + 7]!) !== 'trun') throw new Error('unexpected fragment layout');
    out[trunAt + 8] = 1;
  }
}
