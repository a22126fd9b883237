//! Media segments (`moof` + `mdat`) written byte for byte in the layout the
//! page's segmenter produces (mp4box.js `createMoof` + mfhd/trun patches), so
//! their sizes are known from the sample table alone (`fragment_size`, the port
//! of `web/src/lib/fragment-size.ts`):
//!
//! ```text
//! moof 8 { mfhd 16 (sequence = slot + 1), traf 8 { tfhd 16 (default-base-is-moof),
//!          tfdt 16|20, trun 20 + 16 n (data offset, duration, size, flags, cts) } }
//! mdat 8 + payload
//! ```

pub const MOOF_FIXED_BYTES: u64 = 8 + 16 + 8 + 16 + 16 + 20;
pub const TRUN_BYTES_PER_SAMPLE: u64 = 16;
pub const MDAT_HEADER_BYTES: u64 = 8;
const MAX_U32: u64 = 0xffff_ffff;

pub fn moof_size(sample_count: u64, base_media_decode_time: u64) -> u64 {
    MOOF_FIXED_BYTES
        + TRUN_BYTES_PER_SAMPLE * sample_count
        + if base_media_decode_time > MAX_U32 {
            4
        } else {
            0
        }
}

pub fn fragment_size(sample_count: u64, payload_bytes: u64, base_media_decode_time: u64) -> u64 {
    moof_size(sample_count, base_media_decode_time) + MDAT_HEADER_BYTES + payload_bytes
}

/// One sample as the moof describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentSample {
    pub duration: u32,
    pub size: u32,
    pub sync: bool,
    pub cts_offset: i32,
}

fn put_box_header(out: &mut Vec<u8>, size: u64, kind: &[u8; 4]) {
    out.extend_from_slice(&(size as u32).to_be_bytes());
    out.extend_from_slice(kind);
}

/// `moof` + `mdat` header for `samples` of track `track_id` in slot `slot`;
/// the sample bytes follow it in the file order of the samples.
pub fn fragment_head(
    slot: usize,
    track_id: u32,
    base_media_decode_time: u64,
    samples: &[FragmentSample],
) -> Vec<u8> {
    let n = samples.len() as u64;
    let moof = moof_size(n, base_media_decode_time);
    let payload: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
    let mut out = Vec::with_capacity((moof + MDAT_HEADER_BYTES) as usize);
    put_box_header(&mut out, moof, b"moof");
    put_box_header(&mut out, 16, b"mfhd");
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&((slot as u32).wrapping_add(1)).to_be_bytes());
    let tfdt_v1 = base_media_decode_time > MAX_U32;
    let trun = 20 + TRUN_BYTES_PER_SAMPLE * n;
    put_box_header(&mut out, moof - 8 - 16, b"traf");
    put_box_header(&mut out, 16, b"tfhd");
    out.extend_from_slice(&[0, 0x02, 0, 0]); // default-base-is-moof
    out.extend_from_slice(&track_id.to_be_bytes());
    if tfdt_v1 {
        put_box_header(&mut out, 20, b"tfdt");
        out.extend_from_slice(&[1, 0, 0, 0]);
        out.extend_from_slice(&base_media_decode_time.to_be_bytes());
    } else {
        put_box_header(&mut out, 16, b"tfdt");
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&(base_media_decode_time as u32).to_be_bytes());
    }
    put_box_header(&mut out, trun, b"trun");
    // version 1 (signed composition offsets) when one is negative, as the page patches it
    let version = u8::from(samples.iter().any(|s| s.cts_offset < 0));
    out.extend_from_slice(&[version, 0, 0x0f, 0x01]);
    out.extend_from_slice(&(n as u32).to_be_bytes());
    out.extend_from_slice(&((moof + MDAT_HEADER_BYTES) as u32).to_be_bytes());
    for s in samples {
        let flags: u32 = if s.sync { 1 << 25 } else { 0x0001_0000 };
        out.extend_from_slice(&s.duration.to_be_bytes());
        out.extend_from_slice(&s.size.to_be_bytes());
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&s.cts_offset.to_be_bytes());
    }
    put_box_header(&mut out, MDAT_HEADER_BYTES + payload, b"mdat");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chunkstream_domain::segment_check::{check_media_segment, ExpectedFragment};

    #[test]
    fn written_fragment_has_the_planned_size_and_passes_the_worker_check() {
        let samples: Vec<FragmentSample> = (0..30)
            .map(|i| FragmentSample {
                duration: 512,
                size: 100 + i,
                sync: i == 0,
                cts_offset: if i % 3 == 1 { 1024 } else { -512 },
            })
            .collect();
        let payload: u64 = samples.iter().map(|s| u64::from(s.size)).sum();
        for start in [0u64, 153_600, 5_000_000_000] {
            let mut seg = fragment_head(4, 1, start, &samples);
            assert_eq!(seg.len() as u64, moof_size(30, start) + MDAT_HEADER_BYTES);
            seg.resize(seg.len() + payload as usize, 0xab);
            let size = fragment_size(30, payload, start);
            assert_eq!(seg.len() as u64, size);
            let expected = ExpectedFragment {
                track_id: 1,
                is_video: true,
                start,
                duration: 30 * 512,
                size,
            };
            check_media_segment(&seg, size, &expected).expect("the worker accepts the fragment");
        }
    }
}
