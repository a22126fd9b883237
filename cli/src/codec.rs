//! RFC 6381 codec strings and audio/video parameters from a raw sample entry,
//! computed as mp4box.js's `getCodec()` does, so the CLI describes a file in its
//! manifest exactly as the page would. Bounds-checked: a short box gives `None`.

use crate::boxes::{be_u16, be_u32, children, RawBox};

/// What a sample entry says about the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub codec: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
}

#[cfg(test)]
impl EntryInfo {
    /// A sample entry that says nothing but its codec string (unit tests' tracks).
    pub fn bare(codec: &str) -> Self {
        Self {
            codec: codec.into(),
            width: None,
            height: None,
            sample_rate: None,
            channels: None,
        }
    }
}

const VISUAL_ENTRY_HEADER: usize = 78;
const AUDIO_ENTRY_HEADER: usize = 28;

fn hex2(b: u8) -> String {
    format!("{b:02x}")
}

/// `entry` is one box of the `stsd` (its whole bytes), `is_video` from the handler.
pub fn entry_info(entry_buf: &[u8], entry: &RawBox, is_video: bool) -> EntryInfo {
    let kind = String::from_utf8_lossy(&entry.kind).into_owned();
    let body = entry.body;
    let mut info = EntryInfo {
        codec: kind.clone(),
        width: None,
        height: None,
        sample_rate: None,
        channels: None,
    };
    if is_video {
        info.width = be_u16(entry_buf, body + 24).map(u32::from);
        info.height = be_u16(entry_buf, body + 26).map(u32::from);
        let kids = children(entry_buf, body + VISUAL_ENTRY_HEADER, entry.end).unwrap_or_default();
        let config = |k: &[u8; 4]| {
            kids.iter()
                .find(|b| &b.kind == k)
                .map(|b| b.payload(entry_buf))
        };
        match kind.as_str() {
            "avc1" | "avc2" | "avc3" | "avc4" => {
                if let Some(c) = config(b"avcC").filter(|c| c.len() >= 4) {
                    info.codec = format!("{kind}.{}{}{}", hex2(c[1]), hex2(c[2]), hex2(c[3]));
                }
            }
            "hvc1" | "hev1" => {
                if let Some(c) = config(b"hvcC").filter(|c| c.len() >= 13) {
                    info.codec = format!("{kind}.{}", hevc_suffix(c));
                }
            }
            "vp08" | "vp09" => {
                if let Some(c) = config(b"vpcC").filter(|c| c.len() >= 7) {
                    info.codec = format!("{kind}.{:02}.{:02}.{:02}", c[4], c[5], c[6] >> 4);
                }
            }
            "av01" => {
                if let Some(c) = config(b"av1C").filter(|c| c.len() >= 3) {
                    let profile = c[1] >> 5;
                    let level = c[1] & 0x1f;
                    let tier = if c[2] & 0x80 != 0 { 'H' } else { 'M' };
                    let high = c[2] & 0x40 != 0;
                    let twelve = c[2] & 0x20 != 0;
                    let depth = if high && twelve {
                        12
                    } else if high {
                        10
                    } else {
                        8
                    };
                    info.codec = format!("av01.{profile}.{level:02}{tier}.{depth:02}");
                }
            }
            _ => {}
        }
    } else {
        let version = be_u16(entry_buf, body + 8).unwrap_or(0);
        info.channels = be_u16(entry_buf, body + 16).map(u32::from);
        info.sample_rate = be_u32(entry_buf, body + 24).map(|r| r >> 16);
        // QuickTime sound descriptions v1/v2 carry 16/36 more bytes before the child boxes
        let extra = match version {
            1 => 16,
            2 => 36,
            _ => 0,
        };
        let kids =
            children(entry_buf, body + AUDIO_ENTRY_HEADER + extra, entry.end).unwrap_or_default();
        if kind == "mp4a" {
            if let Some(esds) = find_esds(entry_buf, &kids) {
                if let Some(suffix) = mp4a_suffix(esds.payload(entry_buf)) {
                    info.codec = format!("mp4a.{suffix}");
                }
            }
        }
    }
    info
}

/// The `esds` box of an mp4a entry: a child, or inside QuickTime's `wave`.
pub fn find_esds(buf: &[u8], kids: &[RawBox]) -> Option<RawBox> {
    if let Some(e) = kids.iter().find(|b| &b.kind == b"esds") {
        return Some(*e);
    }
    let wave = kids.iter().find(|b| &b.kind == b"wave")?;
    let inner = children(buf, wave.body, wave.end).ok()?;
    inner.into_iter().find(|b| &b.kind == b"esds")
}

fn hevc_suffix(c: &[u8]) -> String {
    let space = match c[1] >> 6 {
        1 => "A",
        2 => "B",
        3 => "C",
        _ => "",
    };
    let tier = if c[1] & 0x20 != 0 { 'H' } else { 'L' };
    let idc = c[1] & 0x1f;
    let compat = u32::from_be_bytes([c[2], c[3], c[4], c[5]]).reverse_bits();
    let mut s = format!("{space}{idc}.{compat:x}.{tier}{}", c[12]);
    let constraints = &c[6..12];
    if let Some(last) = constraints.iter().rposition(|&b| b != 0) {
        for b in &constraints[..=last] {
            s.push_str(&format!(".{b:x}"));
        }
    }
    s
}

/// Reads one MPEG-4 descriptor header: (tag, body start, body end).
fn descriptor(d: &[u8], at: usize) -> Option<(u8, usize, usize)> {
    let tag = *d.get(at)?;
    let mut len = 0usize;
    let mut pos = at + 1;
    for _ in 0..4 {
        let b = *d.get(pos)?;
        pos += 1;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    let end = pos.checked_add(len)?.min(d.len());
    Some((tag, pos, end))
}

/// `40.2` for AAC-LC: objectTypeIndication in hex, then the audio object type.
fn mp4a_suffix(esds: &[u8]) -> Option<String> {
    // full box header (4), then ES_Descriptor
    let (tag, mut pos, end) = descriptor(esds, 4)?;
    if tag != 0x03 {
        return None;
    }
    pos += 2; // ES_ID
    let flags = *esds.get(pos)?;
    pos += 1;
    if flags & 0x80 != 0 {
        pos += 2;
    }
    if flags & 0x40 != 0 {
        pos += 1 + usize::from(*esds.get(pos)?);
    }
    if flags & 0x20 != 0 {
        pos += 2;
    }
    let (tag, dcd, dcd_end) = descriptor(esds, pos)?;
    if tag != 0x04 || dcd_end > end {
        return None;
    }
    let oti = *esds.get(dcd)?;
    let mut s = format!("{oti:x}");
    if let Some((0x05, dsi, dsi_end)) = descriptor(esds, dcd + 13) {
        if dsi < dsi_end {
            let b0 = *esds.get(dsi)?;
            let mut aot = u32::from(b0 >> 3);
            if aot == 31 {
                let b1 = *esds.get(dsi + 1)?;
                aot = 32 + ((u32::from(b0 & 0x07) << 3) | u32::from(b1 >> 5));
            }
            s.push_str(&format!(".{aot}"));
        }
    }
    Some(s)
}

/// Chromium plays these through MSE; HEVC (and anything unknown) it does not.
pub fn playable_in_chromium(codec: &str) -> bool {
    let c = codec.to_ascii_lowercase();
    [
        "avc1.", "avc3.", "vp09.", "av01.", "mp4a.40", "opus", "flac", "vp8",
    ]
    .iter()
    .any(|p| c.starts_with(p))
}

pub fn codec_name(codec: &str) -> String {
    let c = codec.to_ascii_lowercase();
    let name = if c.starts_with("hvc1") || c.starts_with("hev1") {
        "HEVC (H.265)"
    } else if c.starts_with("avc") {
        "H.264"
    } else if c.starts_with("vp09") {
        "VP9"
    } else if c.starts_with("av01") {
        "AV1"
    } else if c.starts_with("mp4a") {
        "AAC"
    } else {
        return codec.to_owned();
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aac_lc_esds_gives_mp4a_40_2() {
        // full box, ES_Descriptor(3) { id, flags, DecoderConfig(4) { oti 0x40, ..., DSI(5) { 0x12 0x10 } } }
        let esds = [
            0, 0, 0, 0, 0x03, 0x19, 0, 1, 0, 0x04, 0x11, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0x05, 0x02, 0x12, 0x10,
        ];
        assert_eq!(mp4a_suffix(&esds).as_deref(), Some("40.2"));
    }

    #[test]
    fn hevc_main_profile_string_matches_mp4box() {
        let mut c = [0u8; 23];
        c[1] = 0x01; // space 0, tier L, profile 1
        c[2..6].copy_from_slice(&0x6000_0000u32.to_be_bytes());
        c[6] = 0x90;
        c[12] = 93;
        assert_eq!(hevc_suffix(&c), "1.6.L93.90");
    }
}
