//! The segment plan a client computes from its MP4 and proposes when it creates
//! a session, and the validation that decides whether the server accepts it.

use serde::{Deserialize, Serialize};

/// What kind of media a track carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Video,
    Audio,
}

/// One track of the source, as it appears in its own init segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackPlan {
    /// ISO-BMFF track_ID in the init segment and in every fragment's `tfhd`.
    /// Each track has its own init segment, so two tracks may share an id
    /// (ffmpeg's DASH muxer writes track 1 in every file); objects and
    /// Representations are keyed by the track's index in the plan instead.
    pub id: u32,
    pub kind: TrackKind,
    /// RFC 6381 codec string, e.g. `avc1.64001f`.
    pub codec: String,
    pub timescale: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u32>,
    /// In the track's timescale; paired with the init segment's edit list.
    #[serde(default)]
    pub presentation_time_offset: u64,
    /// Exact byte size of this track's init segment.
    pub init_size: u64,
    /// BCP 47 language tag (`en`, `de`, `gsw`…), from the track's `mdhd`; absent = undetermined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Name shown in players' track menus (audio: "Microphone", "Audio 2"…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The audio track players pick first. At most one; none marked = the first audio track.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub default: bool,
}

/// True for a plausible BCP 47 tag: 1..=8 letters, then `-`-separated 1..=8 alphanumerics.
pub fn language_tag_valid(tag: &str) -> bool {
    tag.len() <= 35
        && tag.split('-').enumerate().all(|(i, part)| {
            (1..=8).contains(&part.len())
                && if i == 0 {
                    part.bytes().all(|b| b.is_ascii_alphabetic())
                } else {
                    part.bytes().all(|b| b.is_ascii_alphanumeric())
                }
        })
}

/// Labels end up in XML attributes and playlist quoted strings: printable, no quotes, short.
pub fn label_valid(label: &str) -> bool {
    !label.trim().is_empty()
        && label.chars().count() <= 64
        && !label.chars().any(|c| c.is_control() || c == '"')
}

/// One track's media segment within a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FragmentPlan {
    /// `tfdt` baseMediaDecodeTime, in the track's timescale.
    pub start: u64,
    /// Sum of sample durations, in the track's timescale.
    pub duration: u64,
    /// Exact byte size of the media segment file.
    pub size: u64,
}

/// A slot: the same stretch of time in every track, uploaded and published together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotPlan {
    /// One entry per track, in the order of [`SegmentPlan::tracks`].
    pub tracks: Vec<FragmentPlan>,
}

/// The whole plan as the client proposes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentPlan {
    /// The source file's name: the video's title in its owner's list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// The uploader's fingerprint of the source file (kept, not interpreted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The source's tracks, each with its own init segment.
    pub tracks: Vec<TrackPlan>,
    /// The parts, in playback order: slot `n` is `/v/{id}/seg/{track}/{n}.m4s`.
    pub slots: Vec<SlotPlan>,
}

/// No plan has more slots than this, whatever `PlanLimits::max_slots` is
/// configured to: the bound a stored record's slot count is checked against
/// before anything is allocated for it.
pub const MAX_PLAN_SLOTS: usize = 100_000;

/// Server-side limits on what a plan may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    pub max_slots: usize,
    pub max_tracks: usize,
    pub max_total_duration_secs: u64,
    pub max_total_bytes: u64,
    pub max_segment_bytes: u64,
    pub max_init_bytes: u64,
    /// A single slot longer than this is refused (keeps seek granularity sane).
    pub max_slot_duration_secs: u64,
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self {
            max_slots: 20_000,
            max_tracks: 4,
            max_total_duration_secs: 24 * 3600,
            max_total_bytes: 200 * 1024 * 1024 * 1024,
            max_segment_bytes: 128 * 1024 * 1024,
            max_init_bytes: 1024 * 1024,
            max_slot_duration_secs: 120,
        }
    }
}

/// Why a plan was refused. The category maps to an API error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    CapsExceeded(String),
    #[error("{0}")]
    BrokenTimeline(String),
    #[error(
        "codec '{codec}' of track {track_id} is not one Chunkstream can describe in a manifest"
    )]
    UnsupportedCodec { track_id: u32, codec: String },
}

const CODEC_PREFIXES: &[&str] = &[
    "avc1.", "avc3.", "hvc1.", "hev1.", "vp09.", "av01.", "mp4a.",
];
const CODEC_EXACT: &[&str] = &["opus", "flac", "ac-3", "ec-3", "vp8", "vp9"];

/// True when `codec` is a codec string the manifest can carry for `kind`.
pub fn codec_supported(kind: TrackKind, codec: &str) -> bool {
    let well_formed = !codec.is_empty()
        && codec.len() <= 64
        && codec
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    if !well_formed {
        return false;
    }
    let lower = codec.to_ascii_lowercase();
    let is_video = ["avc1.", "avc3.", "hvc1.", "hev1.", "vp09.", "av01."]
        .iter()
        .any(|p| lower.starts_with(p))
        || lower == "vp8"
        || lower == "vp9";
    let known = CODEC_PREFIXES
        .iter()
        .any(|p| lower.starts_with(p) && lower.len() > p.len())
        || CODEC_EXACT.contains(&lower.as_str());
    known && (is_video == (kind == TrackKind::Video))
}

impl SegmentPlan {
    /// Checks the plan against `limits`; a plan that passes is safe to store,
    /// describe in a manifest and schedule.
    pub fn validate(&self, limits: &PlanLimits) -> Result<(), PlanError> {
        use PlanError::*;
        if let Some(name) = &self.file_name {
            if name.chars().count() > 255 {
                return Err(Invalid("file_name is longer than 255 characters".into()));
            }
        }
        if let Some(fp) = &self.fingerprint {
            if fp.len() > 128 {
                return Err(Invalid("fingerprint is longer than 128 bytes".into()));
            }
        }
        if self.tracks.is_empty() {
            return Err(Invalid("the plan has no tracks".into()));
        }
        if self.tracks.len() > limits.max_tracks {
            return Err(CapsExceeded(format!(
                "{} tracks; at most {} are allowed",
                self.tracks.len(),
                limits.max_tracks
            )));
        }
        if self.slots.is_empty() {
            return Err(Invalid("the plan has no slots".into()));
        }
        let max_slots = limits.max_slots.min(MAX_PLAN_SLOTS);
        if self.slots.len() > max_slots {
            return Err(CapsExceeded(format!(
                "{} slots; at most {max_slots} are allowed",
                self.slots.len(),
            )));
        }
        let video_tracks = self
            .tracks
            .iter()
            .filter(|t| t.kind == TrackKind::Video)
            .count();
        if video_tracks > 1 {
            return Err(Invalid("at most one video track is supported".into()));
        }
        if self.tracks.iter().filter(|t| t.default).count() > 1 {
            return Err(Invalid("at most one track may be marked default".into()));
        }
        for (i, t) in self.tracks.iter().enumerate() {
            if let Some(lang) = &t.language {
                if !language_tag_valid(lang) {
                    return Err(Invalid(format!(
                        "track {i} has language '{lang}', which is not a BCP 47 tag"
                    )));
                }
            }
            if let Some(label) = &t.label {
                if !label_valid(label) {
                    return Err(Invalid(format!(
                        "track {i} has a label that is empty, longer than 64 characters or contains quotes or control characters"
                    )));
                }
            }
            if t.id == 0 {
                return Err(Invalid(format!(
                    "track {i} has id 0; ISO-BMFF track ids start at 1"
                )));
            }

            if t.timescale == 0 {
                return Err(Invalid(format!("track {} has timescale 0", t.id)));
            }
            if !codec_supported(t.kind, &t.codec) {
                return Err(UnsupportedCodec {
                    track_id: t.id,
                    codec: t.codec.clone(),
                });
            }
            if t.init_size < 16 || t.init_size > limits.max_init_bytes {
                return Err(CapsExceeded(format!(
                    "init segment of track {} is {} bytes; it must be 16..={}",
                    t.id, t.init_size, limits.max_init_bytes
                )));
            }
            match t.kind {
                TrackKind::Video => {
                    for (name, v) in [("width", t.width), ("height", t.height)] {
                        match v {
                            Some(1..=16384) => {}
                            _ => {
                                return Err(Invalid(format!(
                                    "video track {} needs a {name} between 1 and 16384",
                                    t.id
                                )))
                            }
                        }
                    }
                }
                TrackKind::Audio => {
                    if !matches!(t.sample_rate, Some(1..=768_000)) {
                        return Err(Invalid(format!("audio track {} needs a sample_rate", t.id)));
                    }
                    if !matches!(t.channels, None | Some(1..=64)) {
                        return Err(Invalid(format!(
                            "audio track {} has a bad channel count",
                            t.id
                        )));
                    }
                }
            }
        }
        let mut total_bytes: u64 = self.tracks.iter().map(|t| t.init_size).sum();
        let mut next_start: Vec<Option<u64>> = vec![None; self.tracks.len()];
        for (slot_index, slot) in self.slots.iter().enumerate() {
            if slot.tracks.len() != self.tracks.len() {
                return Err(Invalid(format!(
                    "slot {slot_index} describes {} tracks; the plan has {}",
                    slot.tracks.len(),
                    self.tracks.len()
                )));
            }
            for (ti, (frag, track)) in slot.tracks.iter().zip(&self.tracks).enumerate() {
                if frag.duration == 0 {
                    return Err(BrokenTimeline(format!(
                        "slot {slot_index} track {} has duration 0",
                        track.id
                    )));
                }
                if frag.duration / u64::from(track.timescale) > limits.max_slot_duration_secs {
                    return Err(CapsExceeded(format!(
                        "slot {slot_index} track {} lasts longer than {} s",
                        track.id, limits.max_slot_duration_secs
                    )));
                }
                if frag.size < 16 || frag.size > limits.max_segment_bytes {
                    return Err(CapsExceeded(format!(
                        "slot {slot_index} track {} is {} bytes; a segment must be 16..={} bytes",
                        track.id, frag.size, limits.max_segment_bytes
                    )));
                }
                if let Some(expected) = next_start[ti] {
                    if frag.start != expected {
                        return Err(BrokenTimeline(format!(
                            "slot {slot_index} track {} starts at {} but the previous slot ends at {expected}",
                            track.id, frag.start
                        )));
                    }
                }
                let end = frag.start.checked_add(frag.duration).ok_or_else(|| {
                    BrokenTimeline(format!(
                        "slot {slot_index} track {} overflows the timeline",
                        track.id
                    ))
                })?;
                next_start[ti] = Some(end);
                total_bytes = total_bytes.saturating_add(frag.size);
            }
        }
        if total_bytes > limits.max_total_bytes {
            return Err(CapsExceeded(format!(
                "{total_bytes} bytes in all; at most {} are allowed",
                limits.max_total_bytes
            )));
        }
        for (ti, track) in self.tracks.iter().enumerate() {
            let first = self.slots[0].tracks[ti].start;
            let end = next_start[ti].unwrap_or(first);
            let secs = (end - first) / u64::from(track.timescale);
            if secs > limits.max_total_duration_secs {
                return Err(CapsExceeded(format!(
                    "track {} lasts {secs} s; at most {} s are allowed",
                    track.id, limits.max_total_duration_secs
                )));
            }
        }
        Ok(())
    }

    /// The track whose timeline defines slot times: the video track, else the first.
    pub fn timing_track(&self) -> usize {
        self.tracks
            .iter()
            .position(|t| t.kind == TrackKind::Video)
            .unwrap_or(0)
    }

    /// Start and duration of each slot in seconds, on the presentation timeline
    /// (relative to the first slot of the timing track).
    pub fn slot_times(&self) -> Vec<(f64, f64)> {
        let ti = self.timing_track();
        let Some(track) = self.tracks.get(ti) else {
            return Vec::new();
        };
        let scale = f64::from(track.timescale.max(1));
        let origin = self
            .slots
            .first()
            .and_then(|s| s.tracks.get(ti))
            .map_or(0, |f| f.start);
        self.slots
            .iter()
            .filter_map(|s| s.tracks.get(ti))
            .map(|f| {
                (
                    f.start.saturating_sub(origin) as f64 / scale,
                    f.duration as f64 / scale,
                )
            })
            .collect()
    }

    /// Total duration in seconds (of the timing track).
    pub fn duration_secs(&self) -> f64 {
        self.slot_times().last().map_or(0.0, |(s, d)| s + d)
    }

    /// The slot playing at `position` seconds; positions past the end map to the last slot.
    pub fn slot_at(&self, position: f64) -> usize {
        let times = self.slot_times();
        if !position.is_finite() || position <= 0.0 {
            return 0;
        }
        times
            .iter()
            .position(|(start, dur)| position < start + dur)
            .unwrap_or(times.len().saturating_sub(1))
    }

    /// The audio track players pick first: the one marked default, else the first audio track.
    pub fn default_audio(&self) -> Option<usize> {
        self.tracks
            .iter()
            .position(|t| t.kind == TrackKind::Audio && t.default)
            .or_else(|| self.tracks.iter().position(|t| t.kind == TrackKind::Audio))
    }

    /// The name of track `ti` in players' menus: its label, else "Video" / "Audio n"
    /// (n counting audio tracks from 1).
    pub fn track_label(&self, ti: usize) -> String {
        let Some(track) = self.tracks.get(ti) else {
            return String::new();
        };
        if let Some(label) = &track.label {
            return label.clone();
        }
        match track.kind {
            TrackKind::Video => "Video".into(),
            TrackKind::Audio => {
                let n = self.tracks[..ti]
                    .iter()
                    .filter(|t| t.kind == TrackKind::Audio)
                    .count();
                format!("Audio {}", n + 1)
            }
        }
    }

    /// Sum of all media segment bytes of a slot.
    pub fn slot_bytes(&self, slot: usize) -> u64 {
        self.slots
            .get(slot)
            .map_or(0, |s| s.tracks.iter().map(|f| f.size).sum())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    fn track_video() -> TrackPlan {
        TrackPlan {
            id: 1,
            kind: TrackKind::Video,
            codec: "avc1.64001f".into(),
            timescale: 1000,
            width: Some(640),
            height: Some(360),
            sample_rate: None,
            channels: None,
            presentation_time_offset: 0,
            init_size: 700,
            language: None,
            label: None,
            default: false,
        }
    }

    fn track_audio() -> TrackPlan {
        TrackPlan {
            id: 2,
            kind: TrackKind::Audio,
            codec: "mp4a.40.2".into(),
            timescale: 48000,
            width: None,
            height: None,
            sample_rate: Some(48000),
            channels: Some(2),
            presentation_time_offset: 0,
            init_size: 600,
            language: None,
            label: None,
            default: false,
        }
    }

    /// Three 10 s slots, video + audio.
    pub(crate) fn sample_plan() -> SegmentPlan {
        let slots = (0..3)
            .map(|i| SlotPlan {
                tracks: vec![
                    FragmentPlan {
                        start: i * 10_000,
                        duration: 10_000,
                        size: 100_000,
                    },
                    FragmentPlan {
                        start: i * 480_000,
                        duration: 480_000,
                        size: 20_000,
                    },
                ],
            })
            .collect();
        SegmentPlan {
            file_name: Some("a.mp4".into()),
            fingerprint: None,
            tracks: vec![track_video(), track_audio()],
            slots,
        }
    }

    #[test]
    fn a_contiguous_plan_within_limits_is_accepted() {
        sample_plan().validate(&PlanLimits::default()).unwrap();
    }

    #[test]
    fn a_gap_in_a_track_timeline_is_a_broken_timeline() {
        let mut plan = sample_plan();
        plan.slots[2].tracks[1].start += 1;
        assert!(matches!(
            plan.validate(&PlanLimits::default()),
            Err(PlanError::BrokenTimeline(m)) if m.contains("slot 2 track 2")
        ));
    }

    #[test]
    fn an_overlap_is_a_broken_timeline() {
        let mut plan = sample_plan();
        plan.slots[1].tracks[0].start -= 1;
        assert!(matches!(
            plan.validate(&PlanLimits::default()),
            Err(PlanError::BrokenTimeline(_))
        ));
    }

    #[test]
    fn zero_duration_is_a_broken_timeline() {
        let mut plan = sample_plan();
        plan.slots[2].tracks[0].duration = 0;
        assert!(matches!(
            plan.validate(&PlanLimits::default()),
            Err(PlanError::BrokenTimeline(_))
        ));
    }

    #[test]
    fn too_many_slots_exceed_the_caps() {
        let limits = PlanLimits {
            max_slots: 2,
            ..PlanLimits::default()
        };
        assert!(matches!(
            sample_plan().validate(&limits),
            Err(PlanError::CapsExceeded(_))
        ));
    }

    #[test]
    fn no_configured_limit_lets_a_plan_past_the_stored_records_slot_bound() {
        let mut plan = sample_plan();
        let template = plan.slots[0].clone();
        plan.slots = vec![template; MAX_PLAN_SLOTS + 1];
        let unlimited = PlanLimits {
            max_slots: usize::MAX,
            ..PlanLimits::default()
        };
        match plan.validate(&unlimited) {
            Err(PlanError::CapsExceeded(why)) => {
                assert!(why.contains(&format!("at most {MAX_PLAN_SLOTS}")), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_oversize_segment_exceeds_the_caps() {
        let mut plan = sample_plan();
        plan.slots[1].tracks[0].size = PlanLimits::default().max_segment_bytes + 1;
        assert!(matches!(
            plan.validate(&PlanLimits::default()),
            Err(PlanError::CapsExceeded(_))
        ));
    }

    #[test]
    fn total_bytes_and_duration_caps_apply() {
        let bytes = PlanLimits {
            max_total_bytes: 300_000,
            ..PlanLimits::default()
        };
        assert!(matches!(
            sample_plan().validate(&bytes),
            Err(PlanError::CapsExceeded(_))
        ));
        let secs = PlanLimits {
            max_total_duration_secs: 29,
            ..PlanLimits::default()
        };
        assert!(matches!(
            sample_plan().validate(&secs),
            Err(PlanError::CapsExceeded(_))
        ));
    }

    #[test]
    fn unknown_or_mismatched_codecs_are_refused() {
        let mut plan = sample_plan();
        plan.tracks[0].codec = "xyz1.2".into();
        assert!(matches!(
            plan.validate(&PlanLimits::default()),
            Err(PlanError::UnsupportedCodec { .. })
        ));
        let mut plan = sample_plan();
        plan.tracks[1].codec = "avc1.64001f".into(); // a video codec on an audio track
        assert!(matches!(
            plan.validate(&PlanLimits::default()),
            Err(PlanError::UnsupportedCodec { .. })
        ));
        let mut plan = sample_plan();
        plan.tracks[0].codec = "avc1.64001f\"><x".into();
        assert!(plan.validate(&PlanLimits::default()).is_err());
    }

    #[test]
    fn slot_count_mismatch_and_missing_dimensions_are_invalid() {
        let mut plan = sample_plan();
        plan.slots[0].tracks.pop();
        assert!(matches!(
            plan.validate(&PlanLimits::default()),
            Err(PlanError::Invalid(_))
        ));
        let mut plan = sample_plan();
        plan.tracks[0].width = None;
        assert!(matches!(
            plan.validate(&PlanLimits::default()),
            Err(PlanError::Invalid(_))
        ));
    }

    #[test]
    fn languages_labels_and_defaults_are_checked() {
        let mut plan = sample_plan();
        let mut second = track_audio();
        second.id = 3;
        second.language = Some("de".into());
        second.label = Some("Microphone".into());
        plan.tracks.push(second);
        for slot in &mut plan.slots {
            let audio = slot.tracks[1];
            slot.tracks.push(audio);
        }
        plan.validate(&PlanLimits::default()).unwrap();
        assert_eq!(
            plan.default_audio(),
            Some(1),
            "none marked: the first audio track"
        );
        assert_eq!(plan.track_label(1), "Audio 1");
        assert_eq!(plan.track_label(2), "Microphone");
        plan.tracks[2].default = true;
        plan.validate(&PlanLimits::default()).unwrap();
        assert_eq!(plan.default_audio(), Some(2));
        plan.tracks[1].default = true;
        assert!(matches!(
            plan.validate(&PlanLimits::default()),
            Err(PlanError::Invalid(_))
        ));
        plan.tracks[1].default = false;
        for bad in ["", "e n", "englishlanguage", "de-<x>", "1a"] {
            plan.tracks[2].language = Some(bad.into());
            assert!(
                matches!(
                    plan.validate(&PlanLimits::default()),
                    Err(PlanError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        plan.tracks[2].language = Some("zh-Hant-TW".into());
        plan.validate(&PlanLimits::default()).unwrap();
        for bad in ["", "say \"hi\"", "a\nb", &"x".repeat(65)] {
            plan.tracks[2].label = Some(bad.into());
            assert!(
                matches!(
                    plan.validate(&PlanLimits::default()),
                    Err(PlanError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_plans_are_invalid() {
        let mut plan = sample_plan();
        plan.slots.clear();
        assert!(plan.validate(&PlanLimits::default()).is_err());
        let mut plan = sample_plan();
        plan.tracks.clear();
        assert!(plan.validate(&PlanLimits::default()).is_err());
    }

    #[test]
    fn positions_map_to_the_slot_playing_then() {
        let plan = sample_plan();
        assert_eq!(plan.slot_at(-3.0), 0);
        assert_eq!(plan.slot_at(0.0), 0);
        assert_eq!(plan.slot_at(9.99), 0);
        assert_eq!(plan.slot_at(10.0), 1);
        assert_eq!(plan.slot_at(25.0), 2);
        assert_eq!(plan.slot_at(1e9), 2);
        assert_eq!(plan.slot_at(f64::NAN), 0);
        assert!((plan.duration_secs() - 30.0).abs() < 1e-9);
    }
}
