//! Raw ISO-BMFF box headers, checked before anything else looks at the bytes:
//! every size must fit its container (or the file), nested boxes of size 0 or
//! smaller than their header are refused, and the number of boxes is capped.
//! Only what passes here reaches the `mp4` crate (see `source.rs`).

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::{MediaError, MediaErrorKind};

pub type FourCc = [u8; 4];

/// A box inside a byte buffer: `start..end` is the whole box, `body..end` its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawBox {
    pub kind: FourCc,
    pub start: usize,
    pub body: usize,
    pub end: usize,
}

impl RawBox {
    pub fn bytes<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start..self.end).unwrap_or(&[])
    }
    pub fn payload<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.body..self.end).unwrap_or(&[])
    }
}

pub fn fourcc_str(k: &FourCc) -> String {
    k.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

pub fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
pub fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
pub fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Most boxes one moov may hold (a 24 h file has a few dozen; a hostile one millions).
const MAX_BOXES_PER_CONTAINER: usize = 4096;

/// The child boxes of `buf[from..to]`, each checked against the container.
pub fn children(buf: &[u8], from: usize, to: usize) -> Result<Vec<RawBox>, MediaError> {
    let bad = |what: String| {
        MediaError::corrupt(format!(
            "The file is damaged: its movie header ('moov' box) {what}."
        ))
    };
    let mut out = Vec::new();
    let mut pos = from;
    while pos < to {
        if out.len() >= MAX_BOXES_PER_CONTAINER {
            return Err(bad("has too many boxes".into()));
        }
        if to - pos < 8 {
            return Err(bad(format!("ends inside a box header at byte {pos}")));
        }
        let size32 = be_u32(buf, pos).unwrap_or(0);
        let mut kind = [0u8; 4];
        kind.copy_from_slice(buf.get(pos + 4..pos + 8).unwrap_or(&[0; 4]));
        let (size, header) = match size32 {
            0 => {
                return Err(bad(format!(
                    "holds a box of size 0 ('{}')",
                    fourcc_str(&kind)
                )))
            }
            1 => (
                be_u64(buf, pos + 8).ok_or_else(|| bad("ends inside a box header".into()))?,
                16u64,
            ),
            n => (u64::from(n), 8u64),
        };
        if size < header {
            return Err(bad(format!(
                "holds a box smaller than its header ('{}')",
                fourcc_str(&kind)
            )));
        }
        let avail = (to - pos) as u64;
        if size > avail {
            return Err(bad(format!(
                "declares a '{}' box of {size} bytes where only {avail} remain",
                fourcc_str(&kind)
            )));
        }
        let end = pos + size as usize;
        out.push(RawBox {
            kind,
            start: pos,
            body: pos + header as usize,
            end,
        });
        pos = end;
    }
    Ok(out)
}

pub fn find<'a>(boxes: &'a [RawBox], kind: &FourCc) -> Option<&'a RawBox> {
    boxes.iter().find(|b| &b.kind == kind)
}

/// A top-level box of the file (positions in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopBox {
    pub kind: FourCc,
    pub start: u64,
    pub size: u64,
}

const FIRST_BOX_TYPES: &[&[u8; 4]] = &[
    b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid", b"meta", b"styp",
    b"sidx", b"pdin", b"junk",
];
const MAX_TOP_LEVEL_BOXES: usize = 100_000;

fn format_size(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else if n < 1024 * 1024 {
        format!("{:.0} KB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
    }
}

/// Walks the top-level boxes reading only their headers (as the page's `scanTopLevelBoxes`).
pub fn scan_top_level(file: &File, size: u64) -> Result<Vec<TopBox>, MediaError> {
    use MediaErrorKind::*;
    if size == 0 {
        return Err(MediaError::new(Empty, "The file is empty."));
    }
    let mut boxes = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        if boxes.len() >= MAX_TOP_LEVEL_BOXES {
            return Err(MediaError::corrupt(
                "The file has too many top-level boxes to be a regular MP4 video.",
            ));
        }
        let mut head = [0u8; 16];
        let want = (size - pos).min(16) as usize;
        read_exact_at(file, &mut head[..want], pos)?;
        let head = &head[..want];
        let first = boxes.is_empty();
        if head.len() < 8 {
            if first {
                return Err(MediaError::new(
                    NotMp4,
                    "This file is not an MP4/MOV video (it is too small).",
                ));
            }
            break; // trailing padding after the last box is tolerated
        }
        let mut kind = [0u8; 4];
        kind.copy_from_slice(&head[4..8]);
        let printable = kind.iter().all(|c| (0x20..=0x7e).contains(c));
        if !printable || (first && !FIRST_BOX_TYPES.contains(&&kind)) {
            if first {
                return Err(MediaError::new(
                    NotMp4,
                    "This file is not an MP4/MOV video: it does not start with an MP4 box (ftyp/moov/mdat).",
                ));
            }
            return Err(MediaError::corrupt(format!(
                "The file is damaged: unreadable data at byte {pos}."
            )));
        }
        let mut box_size = u64::from(be_u32(head, 0).unwrap_or(0));
        let mut header = 8;
        if box_size == 1 {
            box_size = be_u64(head, 8).ok_or_else(|| {
                MediaError::new(
                    Truncated,
                    "The file is truncated (it ends inside a box header).",
                )
            })?;
            header = 16;
        } else if box_size == 0 {
            box_size = size - pos;
        }
        if box_size < header {
            if first {
                return Err(MediaError::new(
                    NotMp4,
                    "This file is not an MP4/MOV video (invalid first box).",
                ));
            }
            return Err(MediaError::corrupt(format!(
                "The file is damaged: invalid box size at byte {pos}."
            )));
        }
        if box_size > size - pos {
            let missing = box_size - (size - pos);
            let what = match &kind {
                b"mdat" => "media data".to_owned(),
                b"moov" => "movie header".to_owned(),
                k => format!("'{}' box", fourcc_str(k)),
            };
            return Err(MediaError::new(
                Truncated,
                format!(
                    "The file is truncated: it ends {} before the end of its {what}. Was the download or copy interrupted? Try the complete file.",
                    format_size(missing)
                ),
            ));
        }
        boxes.push(TopBox {
            kind,
            start: pos,
            size: box_size,
        });
        pos += box_size;
    }
    Ok(boxes)
}

pub fn read_exact_at(file: &File, buf: &mut [u8], at: u64) -> Result<(), MediaError> {
    file.read_exact_at(buf, at).map_err(|e| {
        MediaError::new(
            MediaErrorKind::Truncated,
            format!("The file could not be read completely ({e})."),
        )
    })
}
