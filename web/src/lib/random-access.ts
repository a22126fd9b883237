/**
 * Which sync samples are real random-access points. An MP4's sync table (stss, or the trun sample
 * flags) may list frames a decoder cannot start from: x264's intra refresh marks its
 * recovery-point frames (non-IDR P slices with a recovery point SEI) as sync samples, and a player
 * seeking to one waits forever for a picture. For H.264 the first VCL NAL unit of the sample must
 * be an IDR slice (type 5); for HEVC an IRAP picture (types 16..23: BLA, IDR, CRA). Other codecs
 * (VP9, AV1, audio) are taken at their word.
 *
 * Only the first bytes of a sync sample are read (4 KiB, more only if SEI/parameter sets come
 * first and are longer), in batches; and at first only up to 64 sync samples (see below).
 */
import type { ByteSource } from './analyze.ts';

export type NalCodec = 'h264' | 'hevc';

const HEAD_BYTES = 4096;
const MAX_NALS = 16;
const READS_IN_FLIGHT = 16;
const PROBE_FIRST = 16;
const PROBE_SPREAD = 48;

/** The codec family whose NAL types can be checked, from the codec string. */
export function nalCodec(codec: string): NalCodec | null {
  const c = codec.toLowerCase();
  if (c.startsWith('avc1') || c.startsWith('avc3')) return 'h264';
  if (c.startsWith('hvc1') || c.startsWith('hev1')) return 'hevc';
  return null;
}

function isVcl(codec: NalCodec, type: number): boolean {
  return codec === 'h264' ? type >= 1 && type <= 5 : type <= 31;
}

function isRandomAccess(codec: NalCodec, type: number): boolean {
  return codec === 'h264' ? type === 5 : type >= 16 && type <= 23;
}

/** NAL unit type of the first VCL NAL unit of the sample at [offset, offset + size), or null if none is found. */
export async function firstVclType(file: ByteSource, offset: number, size: number, lengthSize: number, codec: NalCodec): Promise<number | null> {
  let pos = 0;
  let buf = new Uint8Array(await file.slice(offset, offset + Math.min(size, HEAD_BYTES)).arrayBuffer());
  let bufAt = 0;
  for (let n = 0; n < MAX_NALS && pos + lengthSize + 2 <= size; n++) {
    if (pos + lengthSize + 2 > bufAt + buf.byteLength) {
      bufAt = pos;
      buf = new Uint8Array(await file.slice(offset + pos, offset + Math.min(size, pos + HEAD_BYTES)).arrayBuffer());
      if (buf.byteLength < lengthSize + 2) return null;
    }
    const at = pos - bufAt;
    let len = 0;
    for (let i = 0; i < lengthSize; i++) len = len * 256 + buf[at + i]!;
    const header = buf[at + lengthSize]!;
    const type = codec === 'h264' ? header & 0x1f : (header >> 1) & 0x3f;
    if (isVcl(codec, type)) return type;
    if (len === 0) return null;
    pos += lengthSize + len;
  }
  return null;
}

/**
 * For each sync sample of the track, whether it is a real random-access point: returns a new
 * sync array (1 = can start decoding here). Samples that cannot be read as NAL units are left as
 * the file says.
 */
export async function realRandomAccess(
  file: ByteSource,
  samples: { count: number; sync: Uint8Array; offset: Float64Array; size: Float64Array },
  lengthSize: number,
  codec: NalCodec,
): Promise<Uint8Array> {
  const out = samples.sync.slice();
  const syncs: number[] = [];
  for (let i = 0; i < samples.count; i++) if (samples.sync[i]) syncs.push(i);
  const check = async (list: number[]): Promise<number> => {
    let dropped = 0;
    for (let k = 0; k < list.length; k += READS_IN_FLIGHT) {
      const batch = list.slice(k, k + READS_IN_FLIGHT);
      const types = await Promise.all(batch.map((i) => firstVclType(file, samples.offset[i]!, samples.size[i]!, lengthSize, codec)));
      batch.forEach((i, j) => {
        const t = types[j];
        if (t !== null && t !== undefined && !isRandomAccess(codec, t)) {
          out[i] = 0;
          dropped++;
        }
      });
    }
    return dropped;
  };
  // A long recording has thousands of keyframes and the share link waits for this: first a spread
  // of them (the first ones and evenly over the file); only if one is not a random-access point
  // (an encoder that does it at all does it throughout) is every sync sample checked.
  const probe = new Set(syncs.slice(0, PROBE_FIRST));
  for (let k = 0; k < PROBE_SPREAD && syncs.length > 0; k++) probe.add(syncs[Math.floor((k * (syncs.length - 1)) / Math.max(1, PROBE_SPREAD - 1))]!);
  if ((await check([...probe])) === 0) return out;
  await check(syncs.filter((i) => !probe.has(i)));
  return out;
}
