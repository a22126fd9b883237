//! HLS playlists for a plan, from the same demuxed fMP4 parts the MPD lists (no
//! transcode): a multivariant playlist and one VOD media playlist per track, with
//! `EXT-X-MAP` = the track's init segment and one `EXTINF` per slot. Like the MPD
//! they are written once at session creation: every part's duration is in the plan.
//!
//! Layout (relative to `/v/{id}/`): `master.m3u8`, `hls/{track}.m3u8`; the media
//! playlists point at `../init/{track}.mp4` and `../seg/{track}/{slot}.m4s`, the
//! objects the MPD uses. The media sequence starts at 0, so a segment's sequence
//! number is its slot index.

use std::fmt::Write;

use crate::manifest;
use crate::plan::{SegmentPlan, TrackKind};

/// Path of the multivariant playlist, relative to the video's base.
pub const MASTER_PATH: &str = "master.m3u8";

/// Path of track `track`'s media playlist, relative to the video's base.
pub fn media_playlist_path(track: usize) -> String {
    format!("hls/{track}.m3u8")
}

const AUDIO_GROUP: &str = "audio";

/// Codec strings as HLS spells them (RFC 6381 with the sample entry's 4CC).
fn hls_codec(codec: &str) -> String {
    match codec.to_ascii_lowercase().as_str() {
        "flac" => "fLaC".into(),
        "opus" => "Opus".into(),
        _ => codec.into(),
    }
}

/// Per track: (average bits/s, peak bits/s over its parts).
fn bitrates(plan: &SegmentPlan, ti: usize) -> (u64, u64) {
    let scale = f64::from(plan.tracks[ti].timescale.max(1));
    let (mut bytes, mut ticks, mut peak) = (0u64, 0u64, 0f64);
    for frag in plan.slots.iter().filter_map(|s| s.tracks.get(ti)) {
        bytes += frag.size;
        ticks += frag.duration;
        if frag.duration > 0 {
            peak = peak.max(frag.size as f64 * 8.0 * scale / frag.duration as f64);
        }
    }
    let average = if ticks > 0 {
        bytes as f64 * 8.0 * scale / ticks as f64
    } else {
        0.0
    };
    (average.ceil().max(1.0) as u64, peak.ceil().max(1.0) as u64)
}

/// The media playlist of track `ti` (VOD: every part of the plan, then ENDLIST).
pub fn render_media_playlist(plan: &SegmentPlan, ti: usize) -> String {
    let Some(track) = plan.tracks.get(ti) else {
        return String::new();
    };
    let scale = f64::from(track.timescale.max(1));
    let durations: Vec<f64> = plan
        .slots
        .iter()
        .filter_map(|s| s.tracks.get(ti))
        .map(|f| f.duration as f64 / scale)
        .collect();
    // RFC 8216 4.3.3.1: every EXTINF rounded to the nearest integer must be <= the target.
    let target = durations
        .iter()
        .map(|d| d.round() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::with_capacity(64 + durations.len() * 40);
    out.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str(
        "#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n",
    );
    let _ = writeln!(out, "#EXT-X-MAP:URI=\"../{}\"", manifest::init_path(ti));
    for (slot, d) in durations.iter().enumerate() {
        let _ = writeln!(
            out,
            "#EXTINF:{d:.6},\n../{}",
            manifest::segment_path(ti, slot)
        );
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// Quoted-string attribute value: the plan's labels and languages are validated
/// (no quotes, no control characters), this only guards against the impossible.
fn quoted(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && !c.is_control()).collect()
}

/// The multivariant playlist: the video variant with every audio track as a
/// rendition of one `EXT-X-MEDIA` group (the default one `DEFAULT=YES`); without a
/// video track, one variant per audio track.
pub fn render_master_playlist(plan: &SegmentPlan) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let default_audio = plan.default_audio();
    let audio: Vec<usize> = (0..plan.tracks.len())
        .filter(|&i| plan.tracks[i].kind == TrackKind::Audio)
        .collect();
    let video = plan.tracks.iter().position(|t| t.kind == TrackKind::Video);
    let Some(vi) = video else {
        for &ai in &audio {
            let (avg, peak) = bitrates(plan, ai);
            let _ = writeln!(
                out,
                "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={avg},CODECS=\"{}\"\n{}",
                hls_codec(&plan.tracks[ai].codec),
                media_playlist_path(ai)
            );
        }
        return out;
    };
    for &ai in &audio {
        let track = &plan.tracks[ai];
        let is_default = default_audio == Some(ai);
        let _ = write!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{AUDIO_GROUP}\",NAME=\"{}\"",
            quoted(&plan.track_label(ai))
        );
        if let Some(lang) = &track.language {
            let _ = write!(out, ",LANGUAGE=\"{}\"", quoted(lang));
        }
        let _ = write!(
            out,
            ",DEFAULT={},AUTOSELECT=YES",
            if is_default { "YES" } else { "NO" }
        );
        if let Some(ch) = track.channels {
            let _ = write!(out, ",CHANNELS=\"{ch}\"");
        }
        let _ = writeln!(out, ",URI=\"{}\"", media_playlist_path(ai));
    }
    let (mut avg, mut peak) = bitrates(plan, vi);
    // the variant's bandwidth includes the largest audio rendition
    if let Some((a_avg, a_peak)) = audio.iter().map(|&ai| bitrates(plan, ai)).max() {
        avg += a_avg;
        peak += a_peak;
    }
    let mut codecs = hls_codec(&plan.tracks[vi].codec);
    let mut audio_codecs: Vec<String> = audio
        .iter()
        .map(|&ai| hls_codec(&plan.tracks[ai].codec))
        .collect();
    audio_codecs.dedup();
    for c in audio_codecs {
        if !codecs.split(',').any(|x| x == c) {
            codecs.push(',');
            codecs.push_str(&c);
        }
    }
    let _ = write!(
        out,
        "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={avg},CODECS=\"{codecs}\""
    );
    let video_track = &plan.tracks[vi];
    if let (Some(w), Some(h)) = (video_track.width, video_track.height) {
        let _ = write!(out, ",RESOLUTION={w}x{h}");
    }
    if !audio.is_empty() {
        let _ = write!(out, ",AUDIO=\"{AUDIO_GROUP}\"");
    }
    let _ = writeln!(out, "\n{}", media_playlist_path(vi));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plan::tests::sample_plan;

    /// `(EXTINF seconds, URI)` of a media playlist, and its target duration.
    fn entries(playlist: &str) -> (u64, Vec<(f64, String)>) {
        let mut target = 0;
        let mut out = Vec::new();
        let mut lines = playlist.lines();
        while let Some(line) = lines.next() {
            if let Some(t) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
                target = t.parse().unwrap();
            } else if let Some(d) = line.strip_prefix("#EXTINF:") {
                let d: f64 = d.trim_end_matches(',').parse().unwrap();
                out.push((d, lines.next().unwrap().to_string()));
            }
        }
        (target, out)
    }

    fn two_audio_plan() -> SegmentPlan {
        let mut plan = sample_plan();
        plan.slots[2].tracks[0].duration = 10_600; // an irregular last part
        let mut second = plan.tracks[1].clone();
        second.id = 3;
        second.language = Some("de".into());
        second.label = Some("Microphone".into());
        second.channels = Some(1);
        plan.tracks.push(second);
        for slot in &mut plan.slots {
            let mut audio = slot.tracks[1];
            audio.size /= 2;
            slot.tracks.push(audio);
        }
        plan.validate(&crate::plan::PlanLimits::default()).unwrap();
        plan
    }

    #[test]
    fn media_playlists_list_every_part_with_its_exact_duration_and_the_init_segment() {
        let plan = two_audio_plan();
        for ti in 0..plan.tracks.len() {
            let text = render_media_playlist(&plan, ti);
            assert!(text.starts_with("#EXTM3U\n"));
            assert!(text.ends_with("#EXT-X-ENDLIST\n"));
            assert!(text.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
            assert!(text.contains(&format!("#EXT-X-MAP:URI=\"../init/{ti}.mp4\"\n")));
            let (target, list) = entries(&text);
            let scale = f64::from(plan.tracks[ti].timescale);
            assert_eq!(list.len(), plan.slots.len());
            for (slot, (d, uri)) in list.iter().enumerate() {
                let want = plan.slots[slot].tracks[ti].duration as f64 / scale;
                assert!((d - want).abs() < 1e-6, "{d} vs {want}");
                assert!(d.round() as u64 <= target);
                assert_eq!(uri, &format!("../{}", manifest::segment_path(ti, slot)));
            }
        }
        let (target, _) = entries(&render_media_playlist(&plan, 0));
        assert_eq!(target, 11, "10.6 s rounds to 11");
    }

    #[test]
    fn the_master_playlist_has_the_video_variant_and_every_audio_track_as_a_rendition() {
        let plan = two_audio_plan();
        let text = render_master_playlist(&plan);
        let media: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-MEDIA:"))
            .collect();
        assert_eq!(media.len(), 2, "{text}");
        assert!(media[0].contains("NAME=\"Audio 1\""), "{}", media[0]);
        assert!(media[0].contains("DEFAULT=YES"));
        assert!(media[0].contains("URI=\"hls/1.m3u8\""));
        assert!(!media[0].contains("LANGUAGE"));
        assert!(media[1].contains("NAME=\"Microphone\",LANGUAGE=\"de\",DEFAULT=NO"));
        assert!(media[1].contains("CHANNELS=\"1\""));
        let inf: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
            .collect();
        assert_eq!(inf.len(), 1);
        assert!(
            inf[0].contains("CODECS=\"avc1.64001f,mp4a.40.2\""),
            "{}",
            inf[0]
        );
        assert!(inf[0].contains("RESOLUTION=640x360"));
        assert!(inf[0].contains("AUDIO=\"audio\""));
        // peak video 100 000 B over 10 s = 80 000 b/s, plus the larger audio (20 000 B / 10 s)
        assert!(inf[0].contains("BANDWIDTH=96000,"), "{}", inf[0]);
        assert_eq!(text.lines().last(), Some("hls/0.m3u8"));
    }

    #[test]
    fn the_marked_default_audio_track_is_the_default_rendition() {
        let mut plan = two_audio_plan();
        plan.tracks[2].default = true;
        let text = render_master_playlist(&plan);
        let defaults: Vec<&str> = text.lines().filter(|l| l.contains("DEFAULT=YES")).collect();
        assert_eq!(defaults.len(), 1);
        assert!(defaults[0].contains("Microphone"));
    }

    #[test]
    fn audio_only_plans_get_one_variant_per_audio_track() {
        let mut plan = two_audio_plan();
        plan.tracks.remove(0);
        for slot in &mut plan.slots {
            slot.tracks.remove(0);
        }
        plan.validate(&crate::plan::PlanLimits::default()).unwrap();
        let text = render_master_playlist(&plan);
        assert!(!text.contains("#EXT-X-MEDIA:"));
        let uris: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(uris, vec!["hls/0.m3u8", "hls/1.m3u8"]);
    }
}
