//! The check the worker runs on every uploaded media segment before it is
//! published: the bytes must be a well-formed `[styp] [sidx] moof mdat`
//! fragment (see [`crate::fmp4`]) that matches what the client planned for the
//! slot (track, size, start, duration) and, for video, starts with a sync
//! sample so each segment is independently decodable.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::fmp4::{summarize_media_segment, Fmp4Error, FragmentSummary};

/// What the plan says one track's media segment of one slot must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedFragment {
    /// ISO-BMFF track_ID (the `tfhd` track_ID).
    pub track_id: u32,
    pub is_video: bool,
    /// `tfdt` baseMediaDecodeTime, in the track's timescale.
    pub start: u64,
    /// Sum of the fragment's sample durations, in the track's timescale.
    pub duration: u64,
    /// Exact byte size of the segment object.
    pub size: u64,
}

/// Why an uploaded segment was rejected; `Display` is a one-line reason for
/// the status API (e.g. `tfdt 1000 != planned 153600`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SegmentCheckError {
    #[error("samples cover {samples} bytes but the mdat holds {mdat}")]
    UnreferencedMediaData { samples: u64, mdat: u64 },
    #[error("size {actual} != planned {planned}")]
    SizeMismatch { actual: u64, planned: u64 },
    #[error("malformed segment: {0}")]
    Malformed(#[from] Fmp4Error),
    #[error("{count} track fragments (traf) in the moof, expected exactly 1")]
    TrackFragmentCount { count: usize },
    #[error("track_ID {actual} != planned {planned}")]
    TrackIdMismatch { actual: u32, planned: u32 },
    #[error("no tfdt (baseMediaDecodeTime) in the traf")]
    MissingTfdt,
    #[error("tfdt {actual} != planned {planned}")]
    StartMismatch { actual: u64, planned: u64 },
    #[error("the fragment has no samples")]
    NoSamples,
    #[error("duration {actual} != planned {planned}")]
    DurationMismatch { actual: u64, planned: u64 },
    #[error("first video sample is not a sync sample (sample flags {})", fmt_flags(*.flags))]
    FirstSampleNotSync { flags: Option<u32> },
}

fn fmt_flags(flags: Option<u32>) -> String {
    match flags {
        Some(f) => format!("{f:#010x}"),
        None => "absent".to_owned(),
    }
}

impl SegmentCheckError {
    /// Stable machine-readable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            SegmentCheckError::SizeMismatch { .. } => "size_mismatch",
            SegmentCheckError::Malformed(_) => "malformed",
            SegmentCheckError::TrackFragmentCount { .. } => "traf_count",
            SegmentCheckError::TrackIdMismatch { .. } => "track_id_mismatch",
            SegmentCheckError::MissingTfdt => "missing_tfdt",
            SegmentCheckError::StartMismatch { .. } => "start_mismatch",
            SegmentCheckError::NoSamples => "no_samples",
            SegmentCheckError::DurationMismatch { .. } => "duration_mismatch",
            SegmentCheckError::FirstSampleNotSync { .. } => "first_sample_not_sync",
            SegmentCheckError::UnreferencedMediaData { .. } => "unreferenced_media_data",
        }
    }
}

/// Checks one uploaded media segment against its plan.
///
/// `head` is the first bytes of the object (at most e.g.
/// [`crate::fmp4::RECOMMENDED_HEAD_LEN`], or all of it) and `total_len` the
/// object's real length. Checks, in order: `total_len == expected.size`; the
/// box structure ([`summarize_media_segment`]); exactly one `traf` with
/// `track_ID == expected.track_id`; `tfdt` present and `== expected.start`;
/// at least one sample; sample durations sum to `expected.duration`; for
/// video, the first sample is a sync sample.
pub fn check_media_segment(
    head: &[u8],
    total_len: u64,
    expected: &ExpectedFragment,
) -> Result<FragmentSummary, SegmentCheckError> {
    if total_len != expected.size {
        return Err(SegmentCheckError::SizeMismatch {
            actual: total_len,
            planned: expected.size,
        });
    }
    let summary = summarize_media_segment(head, total_len)?;
    let [traf] = summary.tracks.as_slice() else {
        return Err(SegmentCheckError::TrackFragmentCount {
            count: summary.tracks.len(),
        });
    };
    if traf.track_id != expected.track_id {
        return Err(SegmentCheckError::TrackIdMismatch {
            actual: traf.track_id,
            planned: expected.track_id,
        });
    }
    let start = traf
        .base_media_decode_time
        .ok_or(SegmentCheckError::MissingTfdt)?;
    if start != expected.start {
        return Err(SegmentCheckError::StartMismatch {
            actual: start,
            planned: expected.start,
        });
    }
    if traf.sample_count == 0 {
        return Err(SegmentCheckError::NoSamples);
    }
    if traf.total_duration != expected.duration {
        return Err(SegmentCheckError::DurationMismatch {
            actual: traf.total_duration,
            planned: expected.duration,
        });
    }
    let (payload_start, payload_end) = summary.mdat_payload();
    let payload = payload_end.saturating_sub(payload_start);
    if traf.total_sample_size != payload {
        // Bytes no sample refers to would be published unchecked.
        return Err(SegmentCheckError::UnreferencedMediaData {
            samples: traf.total_sample_size,
            mdat: payload,
        });
    }
    if expected.is_video && !traf.first_sample_is_sync {
        return Err(SegmentCheckError::FirstSampleNotSync {
            flags: traf.first_sample_flags,
        });
    }
    Ok(summary)
}
