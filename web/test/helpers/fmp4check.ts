/**
 * Independent reader for our media segments, mirroring the backend worker's checks:
 * [styp] [sidx] moof(mfhd, one traf: tfhd, tfdt, trun+) mdat ending at the end of the file.
 */
export interface SegmentFacts {
  trackId: number;
  baseMediaDecodeTime: number;
  sampleCount: number;
  durationSum: number;
  firstSampleSync: boolean;
  sizes: number[];
  mdatPayload: number;
  dataOffsetOk: boolean;
}

interface Box {
  type: string;
  start: number;
  end: number;
  body: number;
}

function boxes(v: DataView, from: number, to: number): Box[] {
  const out: Box[] = [];
  let p = from;
  while (p < to) {
    if (p + 8 > to) throw new Error(`truncated box header at ${p}`);
    let size = v.getUint32(p);
    const type = String.fromCharCode(v.getUint8(p + 4), v.getUint8(p + 5), v.getUint8(p + 6), v.getUint8(p + 7));
    let body = p + 8;
    if (size === 1) {
      size = Number(v.getBigUint64(p + 8));
      body = p + 16;
    } else if (size === 0) size = to - p;
    if (size < 8 || p + size > to) throw new Error(`bad ${type} box size ${size} at ${p}`);
    out.push({ type, start: p, end: p + size, body });
    p += size;
  }
  return out;
}

export function checkSegment(bytes: Uint8Array, defaults: { sampleDuration?: number; sampleFlags?: number } = {}): SegmentFacts {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const top = boxes(v, 0, bytes.byteLength);
  let i = 0;
  if (top[i]?.type === 'styp') i++;
  if (top[i]?.type === 'sidx') i++;
  const moof = top[i];
  const mdat = top[i + 1];
  if (moof?.type !== 'moof') throw new Error(`expected moof, got ${moof?.type}`);
  if (mdat?.type !== 'mdat') throw new Error(`expected mdat after moof, got ${mdat?.type}`);
  if (top.length !== i + 2) throw new Error('extra boxes after mdat');
  if (mdat.end !== bytes.byteLength) throw new Error('mdat does not end at the end of the file');
  const inner = boxes(v, moof.body, moof.end);
  const trafs = inner.filter((b) => b.type === 'traf');
  if (trafs.length !== 1) throw new Error(`expected exactly one traf, got ${trafs.length}`);
  if (!inner.some((b) => b.type === 'mfhd')) throw new Error('no mfhd');
  const traf = trafs[0]!;
  const tb = boxes(v, traf.body, traf.end);
  const tfhd = tb.find((b) => b.type === 'tfhd');
  const tfdt = tb.find((b) => b.type === 'tfdt');
  const truns = tb.filter((b) => b.type === 'trun');
  if (!tfhd || !tfdt || truns.length === 0) throw new Error('traf lacks tfhd/tfdt/trun');
  const tfhdFlags = v.getUint32(tfhd.body) & 0xffffff;
  const trackId = v.getUint32(tfhd.body + 4);
  let q = tfhd.body + 8;
  let baseDataOffset: number | null = null;
  if (tfhdFlags & 0x1) {
    baseDataOffset = Number(v.getBigUint64(q));
    q += 8;
  }
  if (tfhdFlags & 0x2) q += 4;
  let defDur = defaults.sampleDuration ?? 0;
  let defFlags = defaults.sampleFlags ?? 0;
  if (tfhdFlags & 0x8) {
    defDur = v.getUint32(q);
    q += 4;
  }
  if (tfhdFlags & 0x10) q += 4;
  if (tfhdFlags & 0x20) {
    defFlags = v.getUint32(q);
    q += 4;
  }
  const tfdtVersion = v.getUint8(tfdt.body);
  const bmdt = tfdtVersion === 1 ? Number(v.getBigUint64(tfdt.body + 4)) : v.getUint32(tfdt.body + 4);
  let count = 0;
  let durationSum = 0;
  let firstFlags: number | null = null;
  const sizes: number[] = [];
  let dataOffsetOk = true;
  for (const trun of truns) {
    const vf = v.getUint32(trun.body);
    const flags = vf & 0xffffff;
    let p = trun.body + 4;
    const n = v.getUint32(p);
    p += 4;
    if (flags & 0x1) {
      const dataOffset = v.getInt32(p);
      p += 4;
      const base = baseDataOffset ?? moof.start; // default-base-is-moof or first traf
      if (trun === truns[0] && base + dataOffset !== mdat.body) dataOffsetOk = false;
    }
    let firstSampleFlags: number | null = null;
    if (flags & 0x4) {
      firstSampleFlags = v.getUint32(p);
      p += 4;
    }
    for (let k = 0; k < n; k++) {
      let d = defDur;
      let f = defFlags;
      if (flags & 0x100) {
        d = v.getUint32(p);
        p += 4;
      }
      if (flags & 0x200) {
        sizes.push(v.getUint32(p));
        p += 4;
      }
      if (flags & 0x400) {
        f = v.getUint32(p);
        p += 4;
      }
      if (flags & 0x800) p += 4;
      if (k === 0 && firstSampleFlags !== null) f = firstSampleFlags;
      if (count === 0 && k === 0) firstFlags = f;
      durationSum += d;
    }
    count += n;
  }
  const mdatPayload = mdat.end - mdat.body;
  return {
    trackId,
    baseMediaDecodeTime: bmdt,
    sampleCount: count,
    durationSum,
    firstSampleSync: firstFlags !== null && (firstFlags & 0x00010000) === 0,
    sizes,
    mdatPayload,
    dataOffsetOk,
  };
}
