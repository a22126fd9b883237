//! Seek-bar previews: one small thumbnail per slot (the slot's first keyframe,
//! decoded in the uploader's browser), packed into JPEG sprites of a fixed
//! grid. The layout is a pure function of the plan, so the MPD (written once,
//! at creation) and the WebVTT thumbnails track can name every tile before a
//! single sprite is uploaded.

use crate::plan::{SegmentPlan, TrackKind};

/// Longer side of a tile, in pixels; the shorter follows the video's aspect.
pub const TILE_LONG_SIDE: u32 = 128;
pub const GRID_COLUMNS: u32 = 10;
pub const GRID_ROWS: u32 = 10;
/// Largest sprite accepted (a full 10×10 grid of 128×72 tiles is ~100 KB at the uploader's quality).
pub const MAX_SPRITE_BYTES: u64 = 512 * 1024;
/// Path (relative to the manifest) of the WebVTT thumbnails track.
pub const VTT_PATH: &str = "previews/thumbnails.vtt";
pub const SPRITE_CONTENT_TYPE: &str = "image/jpeg";

/// Path (relative to the manifest) of sprite `index`.
pub fn sprite_path(index: usize) -> String {
    format!("previews/{index}.jpg")
}

/// Where every tile goes: `tiles` tiles (one per slot) of `tile_width`×`tile_height`,
/// row by row in sprites of `columns`×`rows` tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PreviewLayout {
    pub tile_width: u32,
    pub tile_height: u32,
    pub columns: u32,
    pub rows: u32,
    pub tiles: usize,
    pub sprites: usize,
}

/// Rounds to an even number of pixels, at least 16.
fn even(px: f64) -> u32 {
    ((px / 2.0).round() as u32 * 2).max(16)
}

impl PreviewLayout {
    /// The layout for a plan: `None` when it has no video track with known dimensions.
    pub fn for_plan(plan: &SegmentPlan) -> Option<Self> {
        let video = plan.tracks.iter().find(|t| t.kind == TrackKind::Video)?;
        let (w, h) = (f64::from(video.width?), f64::from(video.height?));
        if w < 1.0 || h < 1.0 || plan.slots.is_empty() {
            return None;
        }
        let long = f64::from(TILE_LONG_SIDE);
        let (tile_width, tile_height) = if w >= h {
            (TILE_LONG_SIDE, even(long * h / w).min(TILE_LONG_SIDE))
        } else {
            (even(long * w / h).min(TILE_LONG_SIDE), TILE_LONG_SIDE)
        };
        let per_sprite = (GRID_COLUMNS * GRID_ROWS) as usize;
        Some(Self {
            tile_width,
            tile_height,
            columns: GRID_COLUMNS,
            rows: GRID_ROWS,
            tiles: plan.slots.len(),
            sprites: plan.slots.len().div_ceil(per_sprite),
        })
    }

    pub fn tiles_per_sprite(&self) -> usize {
        (self.columns * self.rows) as usize
    }
    pub fn sprite_width(&self) -> u32 {
        self.tile_width * self.columns
    }
    pub fn sprite_height(&self) -> u32 {
        self.tile_height * self.rows
    }

    /// Sprite index and top-left pixel of tile `tile`.
    pub fn tile_position(&self, tile: usize) -> (usize, u32, u32) {
        let per = self.tiles_per_sprite();
        let within = (tile % per) as u32;
        (
            tile / per,
            (within % self.columns) * self.tile_width,
            (within / self.columns) * self.tile_height,
        )
    }
}

/// `hh:mm:ss.mmm`
fn vtt_time(secs: f64) -> String {
    let ms = (secs.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The WebVTT thumbnails track: one cue per slot, pointing at its tile
/// (`N.jpg#xywh=x,y,w,h`, relative to the track's own URL).
pub fn render_vtt(plan: &SegmentPlan, layout: &PreviewLayout) -> String {
    let mut out = String::from("WEBVTT\n");
    for (tile, (start, duration)) in plan.slot_times().into_iter().enumerate() {
        let (sprite, x, y) = layout.tile_position(tile);
        out.push_str(&format!(
            "\n{} --> {}\n{sprite}.jpg#xywh={x},{y},{},{}\n",
            vtt_time(start),
            vtt_time(start + duration),
            layout.tile_width,
            layout.tile_height
        ));
    }
    out
}

/// Each sprite's time span in milliseconds (start, duration) for the MPD's
/// image SegmentTimeline. DASH-IF players spread a sprite's duration evenly
/// over its `columns × rows` tiles, so the last, partly filled sprite is
/// stretched as if full (its tiles then land where their slots are).
pub fn sprite_spans_ms(plan: &SegmentPlan, layout: &PreviewLayout) -> Vec<(u64, u64)> {
    let times = plan.slot_times();
    let per = layout.tiles_per_sprite();
    let ms = |s: f64| (s * 1000.0).round() as u64;
    times
        .chunks(per)
        .map(|chunk| {
            let first = chunk[0].0;
            let (last_start, last_duration) = chunk[chunk.len() - 1];
            let covered = last_start + last_duration - first;
            let span = covered * per as f64 / chunk.len() as f64;
            (ms(first), ms(first + span).saturating_sub(ms(first)).max(1))
        })
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpriteError {
    #[error("not a JPEG image ({0})")]
    NotJpeg(&'static str),
    #[error("the sprite is {got_w}x{got_h} pixels; this video's sprites are {want_w}x{want_h}")]
    WrongSize {
        got_w: u32,
        got_h: u32,
        want_w: u32,
        want_h: u32,
    },
}

/// Checks an uploaded sprite without decoding it: a baseline or progressive
/// JPEG (SOI … SOF … EOI) of exactly the layout's sprite dimensions.
/// Reads only the marker segments before the scan: bounded time, no allocation.
pub fn check_sprite(bytes: &[u8], layout: &PreviewLayout) -> Result<(), SpriteError> {
    if bytes.len() < 4 || bytes[..2] != [0xFF, 0xD8] {
        return Err(SpriteError::NotJpeg("no start-of-image marker"));
    }
    if bytes[bytes.len() - 2..] != [0xFF, 0xD9] {
        return Err(SpriteError::NotJpeg("no end-of-image marker"));
    }
    let mut at = 2;
    loop {
        let marker = bytes
            .get(at..at + 4)
            .ok_or(SpriteError::NotJpeg("truncated before a frame header"))?;
        if marker[0] != 0xFF {
            return Err(SpriteError::NotJpeg("bad marker"));
        }
        let kind = marker[1];
        let len = usize::from(u16::from_be_bytes([marker[2], marker[3]]));
        if len < 2 {
            return Err(SpriteError::NotJpeg("bad segment length"));
        }
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC)
        if (0xC0..=0xCF).contains(&kind) && ![0xC4, 0xC8, 0xCC].contains(&kind) {
            let sof = bytes
                .get(at + 4..at + 9)
                .ok_or(SpriteError::NotJpeg("truncated frame header"))?;
            let got_h = u32::from(u16::from_be_bytes([sof[1], sof[2]]));
            let got_w = u32::from(u16::from_be_bytes([sof[3], sof[4]]));
            let (want_w, want_h) = (layout.sprite_width(), layout.sprite_height());
            return if (got_w, got_h) == (want_w, want_h) {
                Ok(())
            } else {
                Err(SpriteError::WrongSize {
                    got_w,
                    got_h,
                    want_w,
                    want_h,
                })
            };
        }
        if kind == 0xDA {
            return Err(SpriteError::NotJpeg("scan before a frame header"));
        }
        at += 2 + len;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::plan::{FragmentPlan, SlotPlan, TrackPlan};

    /// A video-only plan of `slots` slots of `slot_ms` milliseconds at `w`×`h`.
    pub(crate) fn video_plan(w: u32, h: u32, slots: usize, slot_ms: u64) -> SegmentPlan {
        SegmentPlan {
            file_name: None,
            fingerprint: None,
            tracks: vec![TrackPlan {
                id: 1,
                kind: TrackKind::Video,
                codec: "avc1.64001f".into(),
                timescale: 1000,
                width: Some(w),
                height: Some(h),
                sample_rate: None,
                channels: None,
                presentation_time_offset: 0,
                init_size: 800,
                language: None,
                label: None,
                default: false,
            }],
            slots: (0..slots as u64)
                .map(|i| SlotPlan {
                    tracks: vec![FragmentPlan {
                        start: i * slot_ms,
                        duration: slot_ms,
                        size: 1000,
                    }],
                })
                .collect(),
        }
    }

    #[test]
    fn a_30_minute_file_in_4_s_parts_needs_five_sprites_of_128x72_tiles() {
        let layout = PreviewLayout::for_plan(&video_plan(1920, 1080, 450, 4000)).unwrap();
        assert_eq!(
            layout,
            PreviewLayout {
                tile_width: 128,
                tile_height: 72,
                columns: 10,
                rows: 10,
                tiles: 450,
                sprites: 5
            }
        );
        assert_eq!((layout.sprite_width(), layout.sprite_height()), (1280, 720));
        assert_eq!(layout.tile_position(0), (0, 0, 0));
        assert_eq!(layout.tile_position(13), (0, 3 * 128, 72));
        assert_eq!(layout.tile_position(449), (4, 9 * 128, 4 * 72));
    }

    #[test]
    fn portrait_video_gets_portrait_tiles_and_no_video_gets_no_layout() {
        let layout = PreviewLayout::for_plan(&video_plan(1080, 1920, 3, 4000)).unwrap();
        assert_eq!((layout.tile_width, layout.tile_height), (72, 128));
        let mut audio_only = video_plan(1080, 1920, 3, 4000);
        audio_only.tracks[0].kind = TrackKind::Audio;
        assert_eq!(PreviewLayout::for_plan(&audio_only), None);
    }

    #[test]
    fn the_vtt_has_one_cue_per_slot_pointing_at_its_tile() {
        let plan = video_plan(1280, 720, 101, 4000);
        let layout = PreviewLayout::for_plan(&plan).unwrap();
        let vtt = render_vtt(&plan, &layout);
        assert!(vtt.starts_with("WEBVTT\n"));
        assert_eq!(vtt.matches(" --> ").count(), 101);
        assert!(vtt.contains("\n00:00:00.000 --> 00:00:04.000\n0.jpg#xywh=0,0,128,72\n"));
        assert!(vtt.contains("\n00:06:36.000 --> 00:06:40.000\n0.jpg#xywh=1152,648,128,72\n"));
        assert!(vtt.contains("\n00:06:40.000 --> 00:06:44.000\n1.jpg#xywh=0,0,128,72\n"));
    }

    #[test]
    fn sprite_spans_cover_full_grids_and_stretch_the_last_one() {
        let plan = video_plan(1280, 720, 150, 4000);
        let layout = PreviewLayout::for_plan(&plan).unwrap();
        assert_eq!(
            sprite_spans_ms(&plan, &layout),
            vec![(0, 400_000), (400_000, 400_000)]
        );
    }

    /// A minimal JPEG-shaped byte string: SOI, APP0, SOF0 (w×h), SOS, EOI.
    pub(crate) fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00];
        b.extend([0xFF, 0xC0, 0x00, 0x0B, 0x08]);
        b.extend(h.to_be_bytes());
        b.extend(w.to_be_bytes());
        b.extend([0x01, 0x01, 0x11, 0x00]);
        b.extend([0xFF, 0xDA, 0x00, 0x02, 0x12, 0x34, 0xFF, 0xD9]);
        b
    }

    #[test]
    fn sprites_are_checked_for_jpeg_markers_and_exact_dimensions() {
        let layout = PreviewLayout::for_plan(&video_plan(1280, 720, 10, 4000)).unwrap();
        assert_eq!(check_sprite(&jpeg_header(1280, 720), &layout), Ok(()));
        assert_eq!(
            check_sprite(&jpeg_header(640, 360), &layout),
            Err(SpriteError::WrongSize {
                got_w: 640,
                got_h: 360,
                want_w: 1280,
                want_h: 720
            })
        );
        assert!(matches!(
            check_sprite(b"<svg onload=alert(1)>", &layout),
            Err(SpriteError::NotJpeg(_))
        ));
        let mut truncated = jpeg_header(1280, 720);
        truncated.truncate(8);
        truncated.extend([0xFF, 0xD9]);
        assert!(matches!(
            check_sprite(&truncated, &layout),
            Err(SpriteError::NotJpeg(_))
        ));
        // a zero segment length cannot loop forever
        let looping = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x00, 0xFF, 0xD9];
        assert!(check_sprite(&looping, &layout).is_err());
    }
}
