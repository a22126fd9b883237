//! The POST /api/videos body for an analysed file and its plan (as the page's
//! request.ts), in the domain crate's types the server validates with.

use chunkstream_domain::plan::{
    FragmentPlan, SegmentPlan, SlotPlan, TrackKind as DomainKind, TrackPlan,
};

use crate::planner::{Plan, TrackKind};
use crate::source::Analysis;

pub fn session_request(
    analysis: &Analysis,
    plan: &Plan,
    file_name: &str,
    fingerprint: &str,
) -> SegmentPlan {
    let tracks = analysis
        .tracks
        .iter()
        .map(|t| {
            let video = t.input.kind == TrackKind::Video;
            TrackPlan {
                id: t.input.id,
                kind: if video {
                    DomainKind::Video
                } else {
                    DomainKind::Audio
                },
                codec: t.info.codec.clone(),
                timescale: t.input.timescale,
                width: if video {
                    t.info.width.filter(|&w| w > 0)
                } else {
                    None
                },
                height: if video {
                    t.info.height.filter(|&h| h > 0)
                } else {
                    None
                },
                sample_rate: if video { None } else { t.info.sample_rate },
                channels: if video { None } else { t.info.channels },
                // a folded edit is in the fragments' composition offsets instead
                presentation_time_offset: t.input.pto - t.composition_shift,
                init_size: t.init_segment.len() as u64,
                // the server labels unnamed audio "Audio N"
                language: t.language.clone(),
                label: t.label.clone(),
                default: t.default,
            }
        })
        .collect();
    let slots = plan
        .slots
        .iter()
        .map(|s| SlotPlan {
            tracks: s
                .tracks
                .iter()
                .map(|x| FragmentPlan {
                    start: x.start,
                    duration: x.duration,
                    size: x.size,
                })
                .collect(),
        })
        .collect();
    SegmentPlan {
        file_name: Some(file_name.chars().take(255).collect()),
        fingerprint: Some(fingerprint.to_owned()),
        tracks,
        slots,
    }
}
