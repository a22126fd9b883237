//! What a player's track menu shows for each audio track: its language (from the
//! `mdhd`), its name (the trak's `udta/name`, else a handler name someone chose) and
//! which one is the default — the same rules as the page's `analyze.ts`
//! (`languageTag`, `trackLabel`), so both clients name a file's tracks alike.

use crate::boxes::{children, find, RawBox};

/// Audio tracks streamed per file, at most (as the page): OBS records up to six; the
/// rest are listed as ignored.
pub const MAX_AUDIO_TRACKS: usize = 3;

/// ISO 639-2 codes of the commonest languages → their BCP 47 (ISO 639-1) form; others
/// stay three letters, which BCP 47 allows.
const ISO639_1: &[(&str, &str)] = &[
    ("eng", "en"),
    ("fra", "fr"),
    ("fre", "fr"),
    ("deu", "de"),
    ("ger", "de"),
    ("spa", "es"),
    ("ita", "it"),
    ("por", "pt"),
    ("nld", "nl"),
    ("dut", "nl"),
    ("rus", "ru"),
    ("ukr", "uk"),
    ("pol", "pl"),
    ("ces", "cs"),
    ("cze", "cs"),
    ("swe", "sv"),
    ("nor", "no"),
    ("dan", "da"),
    ("fin", "fi"),
    ("tur", "tr"),
    ("ell", "el"),
    ("gre", "el"),
    ("ara", "ar"),
    ("heb", "he"),
    ("hin", "hi"),
    ("jpn", "ja"),
    ("kor", "ko"),
    ("zho", "zh"),
    ("chi", "zh"),
    ("vie", "vi"),
    ("tha", "th"),
    ("ind", "id"),
    ("hun", "hu"),
    ("ron", "ro"),
    ("rum", "ro"),
    ("cat", "ca"),
    ("bul", "bg"),
    ("hrv", "hr"),
    ("srp", "sr"),
    ("slk", "sk"),
    ("slo", "sk"),
];

/// A track's language as a BCP 47 tag; none for `und`/`mul`/`zxx` or anything unreadable.
pub fn language_tag(code: &str) -> Option<String> {
    let c = code.trim().to_ascii_lowercase();
    let letters = (2..=3).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_lowercase());
    if !letters || matches!(c.as_str(), "und" | "mul" | "zxx") {
        return None;
    }
    Some(
        ISO639_1
            .iter()
            .find(|(three, _)| *three == c)
            .map_or(c.clone(), |(_, two)| (*two).to_owned()),
    )
}

/// The packed ISO 639-2 code of an `mdhd` box (three 5-bit letters + 0x60).
pub fn mdhd_language(buf: &[u8], mdhd: &RawBox) -> Option<String> {
    let version = *buf.get(mdhd.body)?;
    let at = mdhd.body + if version == 1 { 32 } else { 20 };
    if at + 2 > mdhd.end {
        return None;
    }
    let packed = u16::from_be_bytes([*buf.get(at)?, *buf.get(at + 1)?]);
    let code: String = [10u16, 5, 0]
        .iter()
        .map(|shift| char::from((((packed >> shift) & 0x1f) as u8).wrapping_add(0x60)))
        .collect();
    language_tag(&code)
}

/// Handler names tools write by default: not a name a person gave the track.
fn generic_handler(name: &str) -> bool {
    let lower = name.to_lowercase();
    [
        "handler",
        "core media",
        "media file",
        "gpac",
        "l-smash",
        "mainconcept",
        "apple",
    ]
    .iter()
    .any(|g| lower.contains(g))
        || matches!(lower.as_str(), "sound" | "video" | "audio")
}

/// Printable, at most 64 characters, no quotes (it goes into manifests).
fn clean(raw: &str) -> String {
    let kept: String = raw
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .collect();
    kept.trim()
        .chars()
        .take(64)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// The track's name: `udta/name` (ffmpeg's per-track title), else the `hdlr` name
/// unless it is a tool's default.
pub fn track_label(udta_name: Option<&str>, hdlr_name: Option<&str>) -> Option<String> {
    if let Some(name) = udta_name.map(clean).filter(|n| !n.is_empty()) {
        return Some(name);
    }
    hdlr_name
        .map(clean)
        .filter(|n| !n.is_empty() && !generic_handler(n))
}

/// The `hdlr` box's name (after version/flags, pre_defined, handler type and 12
/// reserved bytes; NUL-terminated, or a Pascal string in old QuickTime files).
pub fn hdlr_name(buf: &[u8], hdlr: &RawBox) -> Option<String> {
    let bytes = buf.get(hdlr.body + 24..hdlr.end)?;
    let bytes = match bytes.first() {
        Some(&n) if usize::from(n) + 1 == bytes.len() && n > 0 => &bytes[1..],
        _ => bytes,
    };
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8(bytes[..end].to_vec()).ok()
}

/// The trak's `udta/name` box, if any.
pub fn udta_name(buf: &[u8], trak_kids: &[RawBox]) -> Option<String> {
    let udta = find(trak_kids, b"udta")?;
    let kids = children(buf, udta.body, udta.end).ok()?;
    let name = find(&kids, b"name")?;
    let bytes = buf.get(name.body..name.end)?;
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8(bytes[..end].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_become_bcp47_tags_and_undetermined_is_none() {
        assert_eq!(language_tag("eng").as_deref(), Some("en"));
        assert_eq!(language_tag("ger").as_deref(), Some("de"));
        assert_eq!(language_tag("gsw").as_deref(), Some("gsw"));
        assert_eq!(language_tag("und"), None);
        assert_eq!(language_tag("e1g"), None);
        assert_eq!(language_tag(""), None);
    }

    #[test]
    fn a_packed_mdhd_language_is_read_for_both_versions() {
        // "deu": d=4, e=5, u=21 → (4<<10)|(5<<5)|21
        let packed: u16 = (4 << 10) | (5 << 5) | 21;
        for version in [0u8, 1] {
            let at = if version == 1 { 32 } else { 20 };
            let mut buf = vec![0u8; 8 + at + 4];
            buf[8] = version;
            buf[8 + at..8 + at + 2].copy_from_slice(&packed.to_be_bytes());
            let mdhd = RawBox {
                kind: *b"mdhd",
                start: 0,
                body: 8,
                end: buf.len(),
            };
            assert_eq!(
                mdhd_language(&buf, &mdhd).as_deref(),
                Some("de"),
                "version {version}"
            );
        }
    }

    #[test]
    fn labels_prefer_the_title_and_skip_tools_default_handler_names() {
        assert_eq!(
            track_label(Some("Microphone"), Some("SoundHandler")).as_deref(),
            Some("Microphone")
        );
        assert_eq!(track_label(None, Some("SoundHandler")), None);
        assert_eq!(track_label(None, Some("Core Media Audio")), None);
        assert_eq!(
            track_label(None, Some("Desktop audio")).as_deref(),
            Some("Desktop audio")
        );
        assert_eq!(
            track_label(Some(" \"Mic\"\u{7} "), None).as_deref(),
            Some("Mic")
        );
        assert_eq!(
            track_label(Some(&"x".repeat(100)), None).map(|l| l.len()),
            Some(64)
        );
    }
}
