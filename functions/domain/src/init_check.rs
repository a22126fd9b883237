//! The check an uploaded init segment passes before it is published: one
//! demuxed track whose id, kind, timescale, coding and picture/sound match
//! what the plan (and so the manifest) says, and an edit list consistent with
//! the planned presentationTimeOffset.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use thiserror::Error;

use crate::fmp4::{summarize_init_segment, Fmp4Error, FourCc};
use crate::plan::{TrackKind, TrackPlan};

/// Why an uploaded init segment was refused; `Display` is a one-line reason.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InitCheckError {
    #[error("malformed init segment: {0}")]
    Malformed(#[from] Fmp4Error),
    #[error("size {actual} != planned {planned}")]
    SizeMismatch { actual: u64, planned: u64 },
    #[error("{0} tracks in the init segment, expected exactly 1 (demuxed)")]
    TrackCount(usize),
    #[error("track_ID {actual} != planned {planned}")]
    TrackIdMismatch { actual: u32, planned: u32 },
    #[error("handler {actual} does not fit a {planned:?} track")]
    KindMismatch { actual: FourCc, planned: TrackKind },
    #[error("timescale {actual} != planned {planned}")]
    TimescaleMismatch { actual: u32, planned: u32 },
    #[error("no sample description (stsd) in the track")]
    MissingSampleEntry,
    #[error("sample entry {actual} does not match the codec string {codec:?}")]
    CodecMismatch { actual: FourCc, codec: String },
    #[error("no {expected} codec configuration box in the {entry} sample entry")]
    MissingCodecConfig { expected: FourCc, entry: FourCc },
    #[error("avcC profile/compatibility/level {actual} does not match the codec string {codec:?}")]
    AvcProfileMismatch { actual: String, codec: String },
    #[error("{what} {actual} != planned {planned}")]
    FormatMismatch {
        what: &'static str,
        actual: u32,
        planned: u32,
    },
    #[error("the edit list starts at media time {media_time} and presentation_time_offset is {pto}: strip the edts and set the offset to {media_time}, or keep it and set 0")]
    EditListMismatch { media_time: i64, pto: u64 },
}

/// Sample entry format and codec configuration box a codec string implies.
fn expected_coding(codec: &str) -> Option<([u8; 4], [u8; 4])> {
    let family = codec.split('.').next().unwrap_or(codec);
    Some(match family.to_ascii_lowercase().as_str() {
        "avc1" => (*b"avc1", *b"avcC"),
        "avc3" => (*b"avc3", *b"avcC"),
        "hvc1" => (*b"hvc1", *b"hvcC"),
        "hev1" => (*b"hev1", *b"hvcC"),
        "vp09" => (*b"vp09", *b"vpcC"),
        "av01" => (*b"av01", *b"av1C"),
        "mp4a" => (*b"mp4a", *b"esds"),
        "opus" => (*b"Opus", *b"dOps"),
        "flac" => (*b"fLaC", *b"dfLa"),
        "ac-3" => (*b"ac-3", *b"dac3"),
        "ec-3" => (*b"ec-3", *b"dec3"),
        _ => return None,
    })
}

/// `avc1.PPCCLL` → the three bytes avcC carries after its version.
fn avc_profile(codec: &str) -> Option<[u8; 3]> {
    let hex = codec.split('.').nth(1)?;
    if hex.len() != 6 || !hex.is_ascii() {
        return None;
    }
    let byte = |i: usize| u8::from_str_radix(hex.get(i..i.checked_add(2)?)?, 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?])
}

fn check_eq(what: &'static str, actual: u32, planned: Option<u32>) -> Result<(), InitCheckError> {
    match planned {
        Some(planned) if planned != actual => Err(InitCheckError::FormatMismatch {
            what,
            actual,
            planned,
        }),
        _ => Ok(()),
    }
}

/// Checks a whole init segment (at most the plan's 1 MiB) against its track's plan.
pub fn check_init_segment(bytes: &[u8], plan: &TrackPlan) -> Result<(), InitCheckError> {
    let actual_len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if actual_len != plan.init_size {
        return Err(InitCheckError::SizeMismatch {
            actual: actual_len,
            planned: plan.init_size,
        });
    }
    let summary = summarize_init_segment(bytes)?;
    let [track] = summary.tracks.as_slice() else {
        return Err(InitCheckError::TrackCount(summary.tracks.len()));
    };
    if track.track_id != plan.id {
        return Err(InitCheckError::TrackIdMismatch {
            actual: track.track_id,
            planned: plan.id,
        });
    }
    let kind_fits = match plan.kind {
        TrackKind::Video => track.is_video(),
        TrackKind::Audio => track.is_audio(),
    };
    if !kind_fits {
        return Err(InitCheckError::KindMismatch {
            actual: FourCc(track.handler_type),
            planned: plan.kind,
        });
    }
    if track.timescale != plan.timescale {
        return Err(InitCheckError::TimescaleMismatch {
            actual: track.timescale,
            planned: plan.timescale,
        });
    }
    let entry = track
        .sample_entry
        .ok_or(InitCheckError::MissingSampleEntry)?;
    let mismatch = || InitCheckError::CodecMismatch {
        actual: entry.format,
        codec: plan.codec.clone(),
    };
    let (format, config) = expected_coding(&plan.codec).ok_or_else(mismatch)?;
    if entry.format.0 != format {
        return Err(mismatch());
    }
    let Some((config_kind, config_head)) = entry.config.filter(|(k, _)| k.0 == config) else {
        return Err(InitCheckError::MissingCodecConfig {
            expected: FourCc(config),
            entry: entry.format,
        });
    };
    if &config_kind.0 == b"avcC" {
        if let Some(planned) = avc_profile(&plan.codec) {
            let [_, p, c, l] = config_head;
            if [p, c, l] != planned {
                return Err(InitCheckError::AvcProfileMismatch {
                    actual: format!("{p:02x}{c:02x}{l:02x}"),
                    codec: plan.codec.clone(),
                });
            }
        }
    }
    match plan.kind {
        TrackKind::Video => {
            check_eq("width", u32::from(entry.width.unwrap_or(0)), plan.width)?;
            check_eq("height", u32::from(entry.height.unwrap_or(0)), plan.height)?;
        }
        TrackKind::Audio => {
            check_eq(
                "sample rate",
                entry.sample_rate.unwrap_or(0),
                plan.sample_rate,
            )?;
            // An mp4a entry's channelcount is commonly a fixed 2 (ffmpeg writes 2
            // for mono AAC); the real layout is in the esds, which is not read.
            if &entry.format.0 != b"mp4a" {
                check_eq(
                    "channel count",
                    u32::from(entry.channels.unwrap_or(0)),
                    plan.channels,
                )?;
            }
        }
    }
    if let Some(media_time) = track.edit_media_time.filter(|t| *t > 0) {
        if plan.presentation_time_offset != 0 {
            return Err(InitCheckError::EditListMismatch {
                media_time,
                pto: plan.presentation_time_offset,
            });
        }
    }
    Ok(())
}
