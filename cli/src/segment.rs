//! Builds a slot's media segments from the source file on demand: the moof from
//! the sample table, then the sample bytes read with a few positioned reads (samples
//! close together share one). Nothing but the segment being sent is held in memory.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::fragment::{fragment_head, FragmentSample};
use crate::planner::Plan;
use crate::source::Analysis;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("slot {slot} track #{track}: built {built} bytes, planned {planned}")]
    SizeMismatch {
        slot: usize,
        track: usize,
        built: u64,
        planned: u64,
    },
    #[error("slot {0} or track {1} is not in the plan")]
    OutOfPlan(usize, usize),
    #[error("reading the source file: {0} (was it changed or moved during the upload?)")]
    Read(#[from] std::io::Error),
}

/// a read costs about as much as copying this many bytes: bigger gaps get their own read
const MAX_GAP: u64 = 16 * 1024;
/// only samples smaller than this are worth reading past a gap for (tiny frames of
/// low-bitrate video, audio): for larger ones the extra copy costs more than the read
const SMALL_SAMPLE: u64 = 16 * 1024;
const MAX_RUN: u64 = 4 * 1024 * 1024;

/// The exact bytes of track `track`'s segment in slot `slot`.
pub fn build_segment(
    file: &File,
    analysis: &Analysis,
    plan: &Plan,
    slot: usize,
    track: usize,
) -> Result<Vec<u8>, SegmentError> {
    let seg = plan
        .slots
        .get(slot)
        .and_then(|s| s.tracks.get(track))
        .ok_or(SegmentError::OutOfPlan(slot, track))?;
    let src = analysis
        .tracks
        .get(track)
        .ok_or(SegmentError::OutOfPlan(slot, track))?;
    let s = &src.input.samples;
    let range = seg.first..seg.last + 1;
    let samples: Vec<FragmentSample> = range
        .clone()
        .map(|i| FragmentSample {
            duration: s.duration[i],
            size: s.size[i],
            sync: s.sync[i],
            cts_offset: src.cts_offsets[i],
        })
        .collect();
    let mut out = fragment_head(slot, src.input.id, seg.start, &samples);
    out.reserve_exact((seg.size as usize).saturating_sub(out.len()));
    // samples closer than MAX_GAP share one read of up to MAX_RUN bytes (interleaved audio
    // and video, or many tiny frames, cost one read instead of one per sample)
    let mut buf = Vec::new();
    let mut i = range.start;
    while i < range.end {
        let start = src.offsets[i];
        let mut end = start + u64::from(s.size[i]);
        let mut j = i + 1;
        let mut gapped = false;
        while j < range.end {
            let (o, z) = (src.offsets[j], u64::from(s.size[j]));
            let contiguous = o == end;
            if o < end
                || o - end > MAX_GAP
                || o + z - start > MAX_RUN
                || (!contiguous && z >= SMALL_SAMPLE)
            {
                break;
            }
            gapped |= !contiguous;
            end = o + z;
            j += 1;
        }
        let need = (end - start) as usize;
        if gapped {
            if buf.len() < need {
                buf.resize(need, 0);
            }
            file.read_exact_at(&mut buf[..need], start)?;
            for k in i..j {
                let at = (src.offsets[k] - start) as usize;
                out.extend_from_slice(&buf[at..at + s.size[k] as usize]);
            }
        } else {
            // contiguous samples: straight into the segment
            let at = out.len();
            out.resize(at + need, 0);
            file.read_exact_at(&mut out[at..], start)?;
        }
        i = j;
    }
    if out.len() as u64 != seg.size {
        return Err(SegmentError::SizeMismatch {
            slot,
            track,
            built: out.len() as u64,
            planned: seg.size,
        });
    }
    Ok(out)
}
