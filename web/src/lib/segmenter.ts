/**
 * Builds one media segment (moof + mdat) for one track of one slot, on demand.
 *
 * Two equivalent ways, bit-for-bit identical output (checked on every slot in the unit tests):
 *
 *  - `build()`: mp4box.js `createFragment(trackId, first, last)` over sample data read from the
 *    file with Blob slices. The reference implementation; memory = the segment, a few times.
 *  - `buildBlob()`: the same `moof` (mp4box `createMoof`, exactly what createFragment writes)
 *    followed by an mdat header and *Blob slices of the source file* for the sample bytes. Nothing
 *    but the moof (16 bytes per sample) is held in memory: the browser streams the sample bytes
 *    from disk when the PUT is sent. This is what the uploader sends.
 */
import { DataStream } from 'mp4box';
import type { ISOFile, Sample } from 'mp4box';
import { ensureSampleLists } from './analyze.ts';
import type { Analysis, AnalyzedTrack, ByteSource } from './analyze.ts';
import { MDAT_HEADER_BYTES, moofSize } from './fragment-size.ts';
import type { Plan, TrackSegment } from './planner.ts';

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

  private locate(slot: number, trackIndex: number): { seg: TrackSegment; track: AnalyzedTrack; samples: Sample[] } {
    ensureSampleLists(this.analysis);
    const planSlot = this.plan.slots[slot];
    if (!planSlot) throw new RangeError(`slot ${slot} out of range`);
    const seg = planSlot.tracks[trackIndex];
    const track = this.analysis.tracks[trackIndex];
    if (!seg || !track) throw new RangeError(`slot ${slot} has no track #${trackIndex}`);
    return { seg, track, samples: track.trak.samples.slice(seg.first, seg.last + 1) };
  }

  /** Reference: createFragment over sample data read into memory. */
  async build(slot: number, trackIndex: number): Promise<Uint8Array> {
    const { seg, track, samples } = this.locate(slot, trackIndex);
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
      }
    }
  }

  /** moof + mdat header bytes, and the file byte ranges making up the mdat payload. */
  header(slot: number, trackIndex: number): { head: Uint8Array; ranges: [number, number][]; size: number } {
    const { seg, track, samples } = this.locate(slot, trackIndex);
    const moof = this.iso.createMoof(samples);
    const stream = new DataStream(new ArrayBuffer(moofSize(samples.length, seg.start)));
    moof.write(stream);
    const trun = moof.trafs[0]!.truns[0]!;
    // as in createFragment: data_offset (from the moof start) points just past the mdat header
    trun.data_offset = moof.size + MDAT_HEADER_BYTES;
    stream.adjustUint32(trun.data_offset_position, trun.data_offset);
    if (stream.getPosition() !== moof.size) throw new SegmentSizeMismatch(`slot ${slot} track ${track.id}: moof is ${moof.size} bytes, written ${stream.getPosition()}`);
    const moofBytes = new Uint8Array(stream.buffer, 0, moof.size);
    const head = new Uint8Array(moof.size + MDAT_HEADER_BYTES);
    head.set(moofBytes, 0);
    let payload = 0;
    const ranges: [number, number][] = [];
    for (const s of samples) {
      payload += s.size;
      const last = ranges[ranges.length - 1];
      if (last && last[1] === s.offset) last[1] = s.offset + s.size;
      else ranges.push([s.offset, s.offset + s.size]);
    }
    const v = new DataView(head.buffer);
    v.setUint32(moof.size, MDAT_HEADER_BYTES + payload);
    head.set([0x6d, 0x64, 0x61, 0x74], moof.size + 4); // 'mdat'
    patchFragment(head, slot, samples);
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
      const { samples } = this.locate(slot, t);
      const { head, size } = this.header(slot, t);
      let inOrder = true;
      for (let i = 1; i < samples.length; i++) if (samples[i]!.offset < samples[i - 1]!.offset + samples[i - 1]!.size) inOrder = false;
      return { t, head, size, samples, inOrder, parts: [head] as BlobPart[], out: inOrder ? null : new Uint8Array(size) };
    });
    const places: Place[] = [];
    tracks.forEach((tr, k) => {
      let at = tr.head.byteLength;
      for (const smp of tr.samples) {
        places.push({ offset: smp.offset, size: smp.size, track: k, at });
        at += smp.size;
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
