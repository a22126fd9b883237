//! Builds a slot's media segments from the source file on demand: the moof from
//! the sample table, then the sample bytes read with one positioned read per run
//! of contiguous samples. Nothing but the segment being sent is held in memory.

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
    let mut i = range.start;
    while i < range.end {
        let start = src.offsets[i];
        let mut end = start + u64::from(s.size[i]);
        let mut j = i + 1;
        while j < range.end && src.offsets[j] == end {
            end += u64::from(s.size[j]);
            j += 1;
        }
        let at = out.len();
        out.resize(at + (end - start) as usize, 0);
        file.read_exact_at(&mut out[at..], start)?;
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
