/**
 * Exact byte size of the media segments we produce, computed without producing them.
 *
 * A segment is exactly what mp4box.js `ISOFile.createFragment(trackId, first, last)` writes
 * (see segmenter.ts), i.e. `moof` + `mdat`, no `styp`/`sidx`:
 *
 *   moof                      8
 *     mfhd                   16  (full box + sequence_number)
 *     traf                    8
 *       tfhd                 16  (flags = default-base-is-moof only: full box + track_ID)
 *       tfdt             16|20  (version 0 unless baseMediaDecodeTime > 2^32-1)
 *       trun        20 + 16*n  (flags 0xF01: data_offset + per-sample duration/size/flags/cts)
 *   mdat            8 + payload
 *
 * Verified against real createFragment output in test/fragment-size.test.ts.
 */
export const MOOF_FIXED_BYTES = 8 + 16 + 8 + 16 + 16 + 20;
export const TRUN_BYTES_PER_SAMPLE = 16;
export const MDAT_HEADER_BYTES = 8;
const MAX_UINT32 = 0xffffffff;

export function moofSize(sampleCount: number, baseMediaDecodeTime: number): number {
  if (!Number.isInteger(sampleCount) || sampleCount < 1) {
    throw new RangeError(`a fragment needs at least one sample (got ${sampleCount})`);
  }
  return MOOF_FIXED_BYTES + TRUN_BYTES_PER_SAMPLE * sampleCount + (baseMediaDecodeTime > MAX_UINT32 ? 4 : 0);
}

export function fragmentSize(sampleCount: number, payloadBytes: number, baseMediaDecodeTime: number): number {
  const mdat = MDAT_HEADER_BYTES + payloadBytes;
  if (mdat > MAX_UINT32) throw new RangeError(`fragment payload too large for a 32-bit mdat (${payloadBytes} bytes)`);
  return moofSize(sampleCount, baseMediaDecodeTime) + mdat;
}
