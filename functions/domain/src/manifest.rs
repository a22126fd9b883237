//! The static MPEG-DASH manifest for a plan: demuxed (one AdaptationSet per
//! track), SegmentTemplate with `$Number$` = slot index, and a SegmentTimeline
//! carrying the exact durations of the plan. Written once at session creation:
//! the timeline is known before any byte is uploaded.

use std::time::Duration;

use dash_mpd::{
    AdaptationSet, AudioChannelConfiguration, Label, Period, Representation, Role, SegmentTemplate,
    SegmentTimeline, MPD, S,
};

use crate::plan::{SegmentPlan, TrackKind};

/// Path (relative to the manifest) of the init segment of the plan's track `track`
/// (its index in the plan, which is also its Representation id).
pub fn init_path(track: usize) -> String {
    format!("init/{track}.mp4")
}

/// Path (relative to the manifest) of a published media segment.
pub fn segment_path(track: usize, slot: usize) -> String {
    format!("seg/{track}/{slot}.m4s")
}

const INIT_TEMPLATE: &str = "init/$RepresentationID$.mp4";
const MEDIA_TEMPLATE: &str = "seg/$RepresentationID$/$Number$.m4s";

/// Run-length encodes durations into `<S>` elements; the first carries `t`.
fn timeline(start: u64, durations: impl Iterator<Item = u64>) -> SegmentTimeline {
    let mut segments: Vec<S> = Vec::new();
    for d in durations {
        match segments.last_mut() {
            Some(last) if last.d == d => last.r = Some(last.r.unwrap_or(0) + 1),
            _ => segments.push(S {
                t: segments.is_empty().then_some(start),
                d,
                ..S::default()
            }),
        }
    }
    SegmentTimeline { segments }
}

/// Builds the MPD document for a validated plan.
pub fn build_mpd(plan: &SegmentPlan) -> MPD {
    let duration = Duration::from_secs_f64(plan.duration_secs().max(0.0));
    let default_audio = plan.default_audio();
    let adaptations = plan
        .tracks
        .iter()
        .enumerate()
        .map(|(ti, track)| {
            let frags = || plan.slots.iter().filter_map(move |s| s.tracks.get(ti));
            let start = frags().next().map_or(0, |f| f.start);
            let bytes: u64 = frags().map(|f| f.size).sum();
            let ticks: u64 = frags().map(|f| f.duration).sum();
            let secs = ticks as f64 / f64::from(track.timescale.max(1));
            let bandwidth = if secs > 0.0 {
                (bytes as f64 * 8.0 / secs).ceil() as u64
            } else {
                0
            };
            let template = SegmentTemplate {
                timescale: Some(u64::from(track.timescale)),
                initialization: Some(INIT_TEMPLATE.into()),
                media: Some(MEDIA_TEMPLATE.into()),
                startNumber: Some(0),
                presentationTimeOffset: Some(track.presentation_time_offset),
                SegmentTimeline: Some(timeline(start, frags().map(|f| f.duration))),
                ..SegmentTemplate::default()
            };
            let (content_type, mime) = match track.kind {
                TrackKind::Video => ("video", "video/mp4"),
                TrackKind::Audio => ("audio", "audio/mp4"),
            };
            let representation = Representation {
                id: Some(ti.to_string()),
                bandwidth: Some(bandwidth.max(1)),
                codecs: Some(track.codec.clone()),
                mimeType: Some(mime.into()),
                width: track.width.map(u64::from),
                height: track.height.map(u64::from),
                audioSamplingRate: track.sample_rate.map(|r| r.to_string()),
                AudioChannelConfiguration: track
                    .channels
                    .map(|c| AudioChannelConfiguration {
                        schemeIdUri: "urn:mpeg:dash:23003:3:audio_channel_configuration:2011"
                            .into(),
                        value: Some(c.to_string()),
                        ..AudioChannelConfiguration::default()
                    })
                    .into_iter()
                    .collect(),
                ..Representation::default()
            };
            let audio = track.kind == TrackKind::Audio;
            let is_default = default_audio == Some(ti);
            AdaptationSet {
                id: Some(ti.to_string()),
                contentType: Some(content_type.into()),
                mimeType: Some(mime.into()),
                lang: track.language.clone(),
                segmentAlignment: Some(true),
                startWithSAP: (track.kind == TrackKind::Video).then_some(1),
                // dash.js picks the initial track by highest selectionPriority
                selectionPriority: audio.then_some(if is_default { 2 } else { 1 }),
                Label: audio
                    .then(|| Label {
                        content: plan.track_label(ti),
                        ..Label::default()
                    })
                    .into_iter()
                    .collect(),
                Role: audio
                    .then(|| Role {
                        schemeIdUri: "urn:mpeg:dash:role:2011".into(),
                        value: Some(if is_default { "main" } else { "alternate" }.into()),
                        ..Role::default()
                    })
                    .into_iter()
                    .collect(),
                SegmentTemplate: Some(template),
                representations: vec![representation],
                ..AdaptationSet::default()
            }
        })
        .collect();
    MPD {
        xmlns: Some("urn:mpeg:dash:schema:mpd:2011".into()),
        mpdtype: Some("static".into()),
        profiles: Some("urn:mpeg:dash:profile:isoff-live:2011".into()),
        mediaPresentationDuration: Some(duration),
        minBufferTime: Some(Duration::from_secs(2)),
        periods: vec![Period {
            id: Some("0".into()),
            start: Some(Duration::ZERO),
            adaptations,
            ..Period::default()
        }],
        ..MPD::default()
    }
}

/// The manifest as XML text.
pub fn render_mpd(plan: &SegmentPlan) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{}\n",
        build_mpd(plan)
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plan::{FragmentPlan, SlotPlan, TrackPlan};

    fn plan() -> SegmentPlan {
        let video = [10_010u64, 9_990, 10_000, 10_000, 4_000];
        let audio = [480_256u64, 479_744, 480_000, 480_000, 192_000];
        let mut vs = 0;
        let mut as_ = 0;
        let slots = video
            .iter()
            .zip(audio)
            .map(|(&vd, ad)| {
                let slot = SlotPlan {
                    tracks: vec![
                        FragmentPlan {
                            start: vs,
                            duration: vd,
                            size: 50_000,
                        },
                        FragmentPlan {
                            start: as_,
                            duration: ad,
                            size: 8_000,
                        },
                    ],
                };
                vs += vd;
                as_ += ad;
                slot
            })
            .collect();
        SegmentPlan {
            file_name: None,
            fingerprint: None,
            tracks: vec![
                TrackPlan {
                    id: 1,
                    kind: TrackKind::Video,
                    codec: "avc1.64001f".into(),
                    timescale: 1000,
                    width: Some(1280),
                    height: Some(720),
                    sample_rate: None,
                    channels: None,
                    presentation_time_offset: 0,
                    init_size: 800,
                    language: None,
                    label: None,
                    default: false,
                },
                TrackPlan {
                    id: 2,
                    kind: TrackKind::Audio,
                    codec: "mp4a.40.2".into(),
                    timescale: 48000,
                    width: None,
                    height: None,
                    sample_rate: Some(48000),
                    channels: Some(2),
                    presentation_time_offset: 1024,
                    init_size: 600,
                    language: None,
                    label: None,
                    default: false,
                },
            ],
            slots,
        }
    }

    /// Expands a parsed SegmentTimeline back into (start, duration) pairs.
    fn expand(tl: &SegmentTimeline) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut t = 0;
        for s in &tl.segments {
            if let Some(st) = s.t {
                t = st;
            }
            for _ in 0..=s.r.unwrap_or(0) {
                out.push((t, s.d));
                t += s.d;
            }
        }
        out
    }

    #[test]
    fn the_parsed_timeline_equals_the_plan_for_every_track() {
        let plan = plan();
        plan.validate(&crate::plan::PlanLimits::default()).unwrap();
        let parsed = dash_mpd::parse(&render_mpd(&plan)).unwrap();
        assert_eq!(parsed.mpdtype.as_deref(), Some("static"));
        let adaptations = &parsed.periods[0].adaptations;
        assert_eq!(adaptations.len(), 2, "demuxed: one AdaptationSet per track");
        for (ti, (aset, track)) in adaptations.iter().zip(&plan.tracks).enumerate() {
            let tpl = aset.SegmentTemplate.as_ref().unwrap();
            assert_eq!(tpl.timescale, Some(u64::from(track.timescale)));
            assert_eq!(tpl.startNumber, Some(0));
            assert_eq!(
                tpl.presentationTimeOffset,
                Some(track.presentation_time_offset)
            );
            assert_eq!(tpl.media.as_deref(), Some(MEDIA_TEMPLATE));
            let want: Vec<(u64, u64)> = plan
                .slots
                .iter()
                .map(|s| (s.tracks[ti].start, s.tracks[ti].duration))
                .collect();
            assert_eq!(expand(tpl.SegmentTimeline.as_ref().unwrap()), want);
            assert_eq!(
                aset.representations[0].id.as_deref(),
                Some(ti.to_string().as_str())
            );
            assert_eq!(
                aset.representations[0].codecs.as_deref(),
                Some(track.codec.as_str())
            );
        }
        let mpd_duration = parsed.mediaPresentationDuration.unwrap().as_secs_f64();
        assert!((mpd_duration - 44.0).abs() < 1e-3, "{mpd_duration}");
    }

    #[test]
    fn every_audio_track_is_an_adaptation_set_with_language_label_and_one_main_role() {
        let mut plan = plan();
        let mut second = plan.tracks[1].clone();
        second.id = 3;
        second.language = Some("de".into());
        second.label = Some("Microphone".into());
        second.default = true;
        plan.tracks[1].language = Some("en".into());
        plan.tracks.push(second);
        for slot in &mut plan.slots {
            let audio = slot.tracks[1];
            slot.tracks.push(audio);
        }
        plan.validate(&crate::plan::PlanLimits::default()).unwrap();
        let parsed = dash_mpd::parse(&render_mpd(&plan)).unwrap();
        let sets = &parsed.periods[0].adaptations;
        assert_eq!(sets.len(), 3);
        let audio: Vec<_> = sets
            .iter()
            .filter(|a| a.contentType.as_deref() == Some("audio"))
            .map(|a| {
                (
                    a.lang.clone(),
                    a.Label[0].content.clone(),
                    a.Role[0].value.clone(),
                    a.selectionPriority,
                    a.representations[0].id.clone(),
                )
            })
            .collect();
        assert_eq!(
            audio,
            vec![
                (
                    Some("en".into()),
                    "Audio 1".into(),
                    Some("alternate".into()),
                    Some(1),
                    Some("1".into())
                ),
                (
                    Some("de".into()),
                    "Microphone".into(),
                    Some("main".into()),
                    Some(2),
                    Some("2".into())
                ),
            ]
        );
        assert!(sets[0].Role.is_empty() && sets[0].Label.is_empty());
    }

    #[test]
    fn equal_durations_are_run_length_encoded() {
        let tl = timeline(5, [3, 3, 3, 4, 4, 1].into_iter());
        let got: Vec<(Option<u64>, u64, Option<i64>)> =
            tl.segments.iter().map(|s| (s.t, s.d, s.r)).collect();
        assert_eq!(
            got,
            vec![(Some(5), 3, Some(2)), (None, 4, Some(1)), (None, 1, None)]
        );
    }

    #[test]
    fn template_paths_match_the_published_keys() {
        assert_eq!(
            MEDIA_TEMPLATE
                .replace("$RepresentationID$", "2")
                .replace("$Number$", "17"),
            segment_path(2, 17)
        );
        assert_eq!(
            INIT_TEMPLATE.replace("$RepresentationID$", "3"),
            init_path(3)
        );
    }
}
