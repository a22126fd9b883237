//! Bounded, panic-free reader for the few ISO-BMFF (fragmented MP4) boxes the
//! worker needs to check untrusted uploads.
//!
//! Why not the `mp4` crate (0.14): it loops forever on a nested box of size 0
//! (a 16-byte `moof` whose child declares size 0), aborts the process on huge
//! declared sizes (a 2^40-byte allocation via `meta`/`udta`; `read_sample`
//! trusts the declared sample size), panics on `emsg`/`meta` size underflow,
//! and its `Mp4Reader` cannot read a standalone media segment. So we parse the
//! boxes we need ourselves:
//!
//! * every declared size is checked against the bytes remaining in the
//!   enclosing container *before* anything is sliced, and a size smaller than
//!   its own header is an error (never an underflow);
//! * size 0 ("to end of file") is only accepted for a top-level `mdat`; a
//!   nested size-0 box is an error, never an infinite loop;
//! * nothing is allocated from a declared size or count: per-sample `trun`
//!   records are folded into aggregates (count, total duration, total size,
//!   first sample's flags) after checking `sample_count * record_len` fits;
//! * all arithmetic is checked, nesting is limited to [`MAX_DEPTH`], and the
//!   module denies clippy's indexing/arithmetic/panic lints.
//!
//! The worker does not load whole segments: [`summarize_media_segment`] takes
//! the first bytes of the object (`head`, e.g. [`RECOMMENDED_HEAD_LEN`]) plus
//! the object's real length. `moof` and the `mdat` header must be inside
//! `head`; the `mdat` payload need not be.

#![deny(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::fmt;

use thiserror::Error;

/// Deepest box nesting [`validate_box_tree`] descends into (top level = 0).
pub const MAX_DEPTH: usize = 12;
/// Most `traf` boxes accepted in one `moof`.
pub const MAX_TRACK_FRAGMENTS: usize = 64;
/// Most `trak` boxes accepted in one `moov`.
pub const MAX_TRACKS: usize = 64;
/// How many leading bytes of a media segment the worker should read.
pub const RECOMMENDED_HEAD_LEN: usize = 4 * 1024 * 1024;

/// `sample_is_non_sync_sample` bit of ISO 14496-12 sample flags.
pub const SAMPLE_IS_NON_SYNC: u32 = 0x0001_0000;

/// `tfhd` flag bits.
pub const TFHD_BASE_DATA_OFFSET: u32 = 0x00_0001;
pub const TFHD_SAMPLE_DESCRIPTION_INDEX: u32 = 0x00_0002;
pub const TFHD_DEFAULT_DURATION: u32 = 0x00_0008;
pub const TFHD_DEFAULT_SIZE: u32 = 0x00_0010;
pub const TFHD_DEFAULT_FLAGS: u32 = 0x00_0020;
pub const TFHD_DURATION_IS_EMPTY: u32 = 0x01_0000;
pub const TFHD_DEFAULT_BASE_IS_MOOF: u32 = 0x02_0000;

/// `trun` flag bits.
pub const TRUN_DATA_OFFSET: u32 = 0x00_0001;
pub const TRUN_FIRST_SAMPLE_FLAGS: u32 = 0x00_0004;
pub const TRUN_SAMPLE_DURATION: u32 = 0x00_0100;
pub const TRUN_SAMPLE_SIZE: u32 = 0x00_0200;
pub const TRUN_SAMPLE_FLAGS: u32 = 0x00_0400;
pub const TRUN_SAMPLE_CTO: u32 = 0x00_0800;

/// Boxes whose payload is a list of child boxes (descended by
/// [`validate_box_tree`]).
const CONTAINERS: &[[u8; 4]] = &[
    *b"moov", *b"trak", *b"edts", *b"mdia", *b"minf", *b"dinf", *b"stbl", *b"mvex", *b"udta",
    *b"moof", *b"traf", *b"mfra", *b"tref", *b"sinf", *b"schi",
];

/// Full boxes (payload starts with version + flags): their payload must hold
/// at least those 4 bytes.
const FULL_BOXES: &[[u8; 4]] = &[
    *b"mvhd", *b"tkhd", *b"mdhd", *b"hdlr", *b"meta", *b"emsg", *b"prft", *b"sidx", *b"mfhd",
    *b"tfhd", *b"tfdt", *b"trun", *b"trex", *b"mehd", *b"elst", *b"stsd", *b"stts", *b"stsc",
    *b"stsz", *b"stz2", *b"stco", *b"co64", *b"ctts", *b"stss", *b"vmhd", *b"smhd", *b"nmhd",
    *b"dref", *b"saiz", *b"saio", *b"sbgp", *b"sgpd", *b"subs", *b"senc", *b"pssh", *b"tfra",
    *b"mfro", *b"schm", *b"tenc", *b"iods",
];

/// A four-character code, displayed as text when printable (`moof`) and with
/// `\xNN` escapes otherwise.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCc(pub [u8; 4]);

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", char::from(b))?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{self}'")
    }
}

/// Why a box structure was rejected. Messages are shown to users.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Fmp4Error {
    #[error("box header at offset {offset} needs {needed} bytes but only {available} remain")]
    TruncatedHeader {
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error("box header at offset {offset} is not within the first {head_len} bytes read")]
    HeaderNotInHead { offset: u64, head_len: u64 },
    #[error(
        "box '{kind}' at offset {offset} declares size {size}, smaller than its {header_len}-byte header"
    )]
    SizeBelowHeader {
        kind: FourCc,
        offset: u64,
        size: u64,
        header_len: u64,
    },
    #[error(
        "box '{kind}' at offset {offset} declares {size} bytes but only {available} remain in its container"
    )]
    SizeExceedsContainer {
        kind: FourCc,
        offset: u64,
        size: u64,
        available: u64,
    },
    #[error(
        "box '{kind}' at offset {offset} has size 0 (\"to end of file\"), which is only accepted for a top-level mdat"
    )]
    SizeZeroNotAllowed { kind: FourCc, offset: u64 },
    #[error("box '{kind}' at offset {offset} is nested deeper than {max_depth} levels")]
    TooDeep {
        kind: FourCc,
        offset: u64,
        max_depth: usize,
    },
    #[error(
        "box '{kind}' at offset {offset} holds {available} payload bytes but needs at least {needed}"
    )]
    BoxTooShort {
        kind: FourCc,
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error("box '{kind}' at offset {offset} has unsupported version {version}")]
    UnsupportedVersion {
        kind: FourCc,
        offset: u64,
        version: u8,
    },
    #[error("unexpected box '{kind}' at offset {offset}: {reason}")]
    UnexpectedBox {
        kind: FourCc,
        offset: u64,
        reason: &'static str,
    },
    #[error("second '{kind}' box at offset {offset} in {parent}")]
    DuplicateBox {
        kind: FourCc,
        offset: u64,
        parent: &'static str,
    },
    #[error("no '{kind}' box in {parent}")]
    MissingBox { kind: FourCc, parent: &'static str },
    #[error("{trailing} bytes follow the mdat at offset {mdat_offset}; mdat must be the last box")]
    TrailingData { mdat_offset: u64, trailing: u64 },
    #[error("{head_len} bytes were read but the object is only {total_len} bytes long")]
    HeadLongerThanObject { head_len: u64, total_len: u64 },
    #[error(
        "moof larger than {limit} bytes: the moof at offset {offset} declares {size} bytes, but only the first {limit} bytes of the segment are read"
    )]
    MoofTooLarge { offset: u64, size: u64, limit: u64 },
    #[error(
        "box 'trun' at offset {offset} declares {sample_count} samples of {record_len} bytes each but holds only {available} bytes"
    )]
    SampleCountTooLarge {
        offset: u64,
        sample_count: u32,
        record_len: u64,
        available: u64,
    },
    #[error(
        "track {track_id}: trun at offset {offset} has no per-sample {field} and tfhd has no default sample {field} (trex defaults are not used for media segments)"
    )]
    MissingSampleDefault {
        track_id: u32,
        offset: u64,
        field: &'static str,
    },
    #[error(
        "track {track_id}: trun at offset {offset} has data_offset {data_offset} from base {base}, which points outside the file"
    )]
    InvalidDataOffset {
        track_id: u32,
        offset: u64,
        base: u64,
        data_offset: i32,
    },
    #[error(
        "track {track_id}: trun at offset {offset} references bytes {start}..{end}, outside the mdat payload {mdat_start}..{mdat_end}"
    )]
    SampleDataOutsideMdat {
        track_id: u32,
        offset: u64,
        start: u64,
        end: u64,
        mdat_start: u64,
        mdat_end: u64,
    },
    #[error("arithmetic overflow computing {what}")]
    Overflow { what: &'static str },
    #[error("more than {max} '{kind}' boxes in {parent}")]
    TooMany {
        kind: FourCc,
        max: usize,
        parent: &'static str,
    },
    #[error("box '{kind}' at offset {offset} has track_ID 0")]
    ZeroTrackId { kind: FourCc, offset: u64 },
    #[error("track_ID {track_id} is used by more than one '{kind}'")]
    DuplicateTrackId { track_id: u32, kind: FourCc },
    #[error("track {track_id}: mdhd timescale is 0")]
    ZeroTimescale { track_id: u32 },
}

type Result<T> = std::result::Result<T, Fmp4Error>;

/// One parsed box header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: [u8; 4],
    /// Extended type of a `uuid` box.
    pub user_type: Option<[u8; 16]>,
    /// 8, 16 (64-bit largesize), +16 for `uuid`.
    pub header_len: usize,
    /// Total size including the header (size 0 already resolved to "to end").
    pub size: u64,
    /// Absolute offset of the box's first byte.
    pub offset: u64,
}

impl BoxHeader {
    pub fn fourcc(&self) -> FourCc {
        FourCc(self.kind)
    }

    /// Absolute offset of the first payload byte.
    pub fn payload_offset(&self) -> u64 {
        self.offset.saturating_add(len_u64(self.header_len))
    }

    /// Payload length (`size` is never below `header_len`).
    pub fn payload_len(&self) -> u64 {
        self.size.saturating_sub(len_u64(self.header_len))
    }

    /// Absolute offset one past the box's last byte.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(self.size)
    }
}

/// A box fully held in memory: header plus payload slice.
#[derive(Debug, Clone, Copy)]
pub struct BoxRef<'a> {
    pub header: BoxHeader,
    pub payload: &'a [u8],
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `bytes[from..]`, or empty when `from` is past the end.
fn tail(bytes: &[u8], from: u64) -> &[u8] {
    usize::try_from(from)
        .ok()
        .and_then(|f| bytes.get(f..))
        .unwrap_or(&[])
}

/// `bytes[from..to]`, or `None` when out of range.
fn slice(bytes: &[u8], from: u64, to: u64) -> Option<&[u8]> {
    let from = usize::try_from(from).ok()?;
    let to = usize::try_from(to).ok()?;
    bytes.get(from..to)
}

fn read_array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    let end = at.checked_add(N)?;
    bytes.get(at..end)?.try_into().ok()
}

/// Reads one box header from `bytes` (which starts at the box), where
/// `available` is how many bytes remain in the enclosing container from the
/// box's start (it may exceed `bytes.len()` at the top level of a partly read
/// object). `allow_to_end_mdat` accepts size 0 for an `mdat` (top level only).
fn parse_header(
    bytes: &[u8],
    offset: u64,
    available: u64,
    allow_to_end_mdat: bool,
) -> Result<BoxHeader> {
    let need = |n: usize| -> Result<()> {
        let n64 = len_u64(n);
        if available < n64 {
            Err(Fmp4Error::TruncatedHeader {
                offset,
                needed: n64,
                available,
            })
        } else if bytes.len() < n {
            Err(Fmp4Error::HeaderNotInHead {
                offset,
                head_len: offset.saturating_add(len_u64(bytes.len())),
            })
        } else {
            Ok(())
        }
    };
    need(8)?;
    let truncated = || Fmp4Error::TruncatedHeader {
        offset,
        needed: 8,
        available,
    };
    let size32 = u32::from_be_bytes(read_array(bytes, 0).ok_or_else(truncated)?);
    let kind: [u8; 4] = read_array(bytes, 4).ok_or_else(truncated)?;
    let mut header_len: usize = 8;
    let mut size = u64::from(size32);
    if size32 == 1 {
        need(16)?;
        size = u64::from_be_bytes(read_array(bytes, 8).ok_or_else(truncated)?);
        header_len = 16;
    }
    let mut user_type = None;
    if &kind == b"uuid" {
        let end = header_len.saturating_add(16);
        need(end)?;
        user_type = Some(read_array::<16>(bytes, header_len).ok_or_else(truncated)?);
        header_len = end;
    }
    if size32 == 0 {
        if allow_to_end_mdat && &kind == b"mdat" {
            size = available;
        } else {
            return Err(Fmp4Error::SizeZeroNotAllowed {
                kind: FourCc(kind),
                offset,
            });
        }
    }
    if size < len_u64(header_len) {
        return Err(Fmp4Error::SizeBelowHeader {
            kind: FourCc(kind),
            offset,
            size,
            header_len: len_u64(header_len),
        });
    }
    if size > available {
        return Err(Fmp4Error::SizeExceedsContainer {
            kind: FourCc(kind),
            offset,
            size,
            available,
        });
    }
    Ok(BoxHeader {
        kind,
        user_type,
        header_len,
        size,
        offset,
    })
}

/// Reads the header of a box nested in an in-memory container: `bytes` starts
/// at the box and ends at the container's end; `offset` is the box's absolute
/// offset. Size 0 is rejected (only a top-level `mdat` may use it).
pub fn read_box_header(bytes: &[u8], offset: u64) -> Result<BoxHeader> {
    parse_header(bytes, offset, len_u64(bytes.len()), false)
}

/// Iterates over the boxes packed in `bytes` (a container payload held in
/// memory; `base_offset` is the absolute offset of `bytes[0]`). Stops after
/// the first error. Every box is at least 8 bytes, so iteration is bounded.
pub fn iter_boxes(bytes: &[u8], base_offset: u64) -> BoxIter<'_> {
    BoxIter {
        bytes,
        base_offset,
        pos: 0,
        done: false,
    }
}

/// Iterator returned by [`iter_boxes`].
#[derive(Debug, Clone)]
pub struct BoxIter<'a> {
    bytes: &'a [u8],
    base_offset: u64,
    pos: usize,
    done: bool,
}

impl<'a> Iterator for BoxIter<'a> {
    type Item = Result<BoxRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let rest = self.bytes.get(self.pos..).unwrap_or(&[]);
        if rest.is_empty() {
            self.done = true;
            return None;
        }
        let offset = self.base_offset.saturating_add(len_u64(self.pos));
        let item = read_box_header(rest, offset).and_then(|header| {
            let size = usize::try_from(header.size)
                .map_err(|_| Fmp4Error::Overflow { what: "a box size" })?;
            let payload =
                rest.get(header.header_len..size)
                    .ok_or(Fmp4Error::SizeExceedsContainer {
                        kind: header.fourcc(),
                        offset,
                        size: header.size,
                        available: len_u64(rest.len()),
                    })?;
            self.pos = self.pos.checked_add(size).ok_or(Fmp4Error::Overflow {
                what: "a box offset",
            })?;
            Ok(BoxRef { header, payload })
        });
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

/// Checks that `bytes` (boxes at the top of some container; `base_offset` is
/// the absolute offset of `bytes[0]`) is a well-formed box tree: every size
/// fits its container, known containers are descended (at most
/// [`MAX_DEPTH`] levels), known full boxes hold their version/flags.
/// Returns the number of boxes seen.
pub fn validate_box_tree(bytes: &[u8], base_offset: u64) -> Result<usize> {
    validate_children(bytes, base_offset, 0)
}

fn validate_children(bytes: &[u8], base_offset: u64, depth: usize) -> Result<usize> {
    let mut count: usize = 0;
    for child in iter_boxes(bytes, base_offset) {
        let child = child?;
        count = count.saturating_add(1);
        let header = child.header;
        if FULL_BOXES.contains(&header.kind) && child.payload.len() < 4 {
            return Err(Fmp4Error::BoxTooShort {
                kind: header.fourcc(),
                offset: header.offset,
                needed: 4,
                available: len_u64(child.payload.len()),
            });
        }
        if CONTAINERS.contains(&header.kind) {
            let child_depth = depth.saturating_add(1);
            if child_depth > MAX_DEPTH {
                return Err(Fmp4Error::TooDeep {
                    kind: header.fourcc(),
                    offset: header.offset,
                    max_depth: MAX_DEPTH,
                });
            }
            let n = validate_children(child.payload, header.payload_offset(), child_depth)?;
            count = count.saturating_add(n);
        }
    }
    Ok(count)
}

/// Sequential big-endian field reader over one box's payload.
struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
    kind: [u8; 4],
    offset: u64,
}

impl<'a> Fields<'a> {
    fn new(b: &BoxRef<'a>) -> Self {
        Fields {
            bytes: b.payload,
            pos: 0,
            kind: b.header.kind,
            offset: b.header.offset,
        }
    }

    /// Reader plus (version, flags) of a full box.
    fn full_box(b: &BoxRef<'a>) -> Result<(Self, u8, u32)> {
        let mut f = Self::new(b);
        let vf = f.u32()?;
        let [version, ..] = vf.to_be_bytes();
        Ok((f, version, vf & 0x00ff_ffff))
    }

    fn short(&self, needed: usize) -> Fmp4Error {
        Fmp4Error::BoxTooShort {
            kind: FourCc(self.kind),
            offset: self.offset,
            needed: len_u64(needed),
            available: len_u64(self.bytes.len()),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.pos.saturating_add(N);
        let a = read_array::<N>(self.bytes, self.pos).ok_or_else(|| self.short(end))?;
        self.pos = end;
        Ok(a)
    }

    fn skip(&mut self, n: usize) -> Result<()> {
        let end = self.pos.saturating_add(n);
        if end > self.bytes.len() {
            return Err(self.short(end));
        }
        self.pos = end;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32> {
        self.array().map(i32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_be_bytes)
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn unsupported(&self, version: u8) -> Fmp4Error {
        Fmp4Error::UnsupportedVersion {
            kind: FourCc(self.kind),
            offset: self.offset,
            version,
        }
    }
}

/// Aggregates of one `traf` in a media segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackFragmentSummary {
    pub track_id: u32,
    /// tfhd flags (24 bits).
    pub tfhd_flags: u32,
    pub sample_description_index: Option<u32>,
    /// `tfdt` baseMediaDecodeTime, if a `tfdt` is present.
    pub base_media_decode_time: Option<u64>,
    pub trun_count: u32,
    pub sample_count: u64,
    /// Sum of sample durations (track timescale).
    pub total_duration: u64,
    /// Sum of sample sizes in bytes.
    pub total_sample_size: u64,
    /// Effective flags of the first sample: trun first-sample-flags, else the
    /// first per-sample flags, else tfhd default-sample-flags; `None` when no
    /// flags are present anywhere in the fragment.
    pub first_sample_flags: Option<u32>,
    /// `first_sample_flags` has `sample_is_non_sync_sample` clear. When no
    /// flags are present the sample is *not provably* sync (the defaults live
    /// in the init segment's `trex`, which a media segment check does not
    /// have), so this is `false`.
    pub first_sample_is_sync: bool,
    /// Absolute offset of the first sample byte (`None` without sample data).
    pub data_start: Option<u64>,
    /// Absolute offset one past the last sample byte of the last run.
    pub data_end: Option<u64>,
}

/// Result of [`summarize_media_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FragmentSummary {
    /// `mfhd` sequence_number.
    pub sequence_number: u32,
    pub tracks: Vec<TrackFragmentSummary>,
    pub moof_offset: u64,
    pub moof_size: u64,
    pub mdat_offset: u64,
    /// Whole `mdat` box including its header.
    pub mdat_size: u64,
    pub mdat_header_len: u64,
    pub total_len: u64,
}

impl FragmentSummary {
    /// Absolute offset range of the mdat payload.
    pub fn mdat_payload(&self) -> (u64, u64) {
        (
            self.mdat_offset.saturating_add(self.mdat_header_len),
            self.mdat_offset.saturating_add(self.mdat_size),
        )
    }
}

/// Summarizes a standalone media segment `[styp] [sidx...] [prft|emsg|free|skip...] moof mdat`.
///
/// `head` is the first bytes of the object (possibly all of it) and
/// `total_len` its real length. `moof` must lie entirely within `head`
/// ([`Fmp4Error::MoofTooLarge`] otherwise) and the `mdat` header too; the
/// `mdat` must be the last box and end exactly at `total_len`. Every `trun`'s
/// sample data must lie inside the `mdat` payload.
pub fn summarize_media_segment(head: &[u8], total_len: u64) -> Result<FragmentSummary> {
    let head_len = len_u64(head.len());
    if head_len > total_len {
        return Err(Fmp4Error::HeadLongerThanObject {
            head_len,
            total_len,
        });
    }
    let mut pos: u64 = 0;
    let mut index: usize = 0;
    let mut moof: Option<BoxRef<'_>> = None;
    let mut mdat: Option<BoxHeader> = None;
    while pos < total_len {
        let remaining = total_len.saturating_sub(pos);
        if let Some(m) = mdat {
            return Err(Fmp4Error::TrailingData {
                mdat_offset: m.offset,
                trailing: remaining,
            });
        }
        if pos >= head_len {
            return Err(Fmp4Error::HeaderNotInHead {
                offset: pos,
                head_len,
            });
        }
        let header = parse_header(tail(head, pos), pos, remaining, true)?;
        let kind = header.fourcc();
        let unexpected = |reason| Fmp4Error::UnexpectedBox {
            kind,
            offset: header.offset,
            reason,
        };
        if moof.is_some() && &header.kind != b"mdat" {
            return Err(unexpected("only mdat may follow the moof"));
        }
        match &header.kind {
            b"styp" => {
                if index != 0 {
                    return Err(unexpected("styp must be the first box"));
                }
                require_payload(&header, 8)?;
            }
            b"sidx" | b"prft" | b"emsg" => require_payload(&header, 4)?,
            b"free" | b"skip" => {}
            b"moof" => {
                let end = header.end();
                let payload = slice(head, header.payload_offset(), end).ok_or(
                    Fmp4Error::MoofTooLarge {
                        offset: header.offset,
                        size: header.size,
                        limit: head_len,
                    },
                )?;
                moof = Some(BoxRef { header, payload });
            }
            b"mdat" => {
                if moof.is_none() {
                    return Err(unexpected("mdat before moof"));
                }
                mdat = Some(header);
            }
            _ => {
                return Err(unexpected(
                    "not allowed in a media segment (allowed: styp, sidx, prft, emsg, free, skip, moof, mdat)",
                ))
            }
        }
        pos = header.end();
        index = index.saturating_add(1);
    }
    let moof = moof.ok_or(Fmp4Error::MissingBox {
        kind: FourCc(*b"moof"),
        parent: "the media segment",
    })?;
    let mdat = mdat.ok_or(Fmp4Error::MissingBox {
        kind: FourCc(*b"mdat"),
        parent: "the media segment",
    })?;

    validate_children(moof.payload, moof.header.payload_offset(), 1)?;
    let ctx = MoofContext {
        moof_offset: moof.header.offset,
        mdat_start: mdat.payload_offset(),
        mdat_end: mdat.end(),
    };
    let (sequence_number, tracks) = parse_moof(&moof, &ctx)?;
    Ok(FragmentSummary {
        sequence_number,
        tracks,
        moof_offset: moof.header.offset,
        moof_size: moof.header.size,
        mdat_offset: mdat.offset,
        mdat_size: mdat.size,
        mdat_header_len: len_u64(mdat.header_len),
        total_len,
    })
}

fn require_payload(header: &BoxHeader, needed: u64) -> Result<()> {
    if header.payload_len() < needed {
        return Err(Fmp4Error::BoxTooShort {
            kind: header.fourcc(),
            offset: header.offset,
            needed,
            available: header.payload_len(),
        });
    }
    Ok(())
}

struct MoofContext {
    moof_offset: u64,
    mdat_start: u64,
    mdat_end: u64,
}

fn parse_moof(moof: &BoxRef<'_>, ctx: &MoofContext) -> Result<(u32, Vec<TrackFragmentSummary>)> {
    let mut sequence_number = None;
    let mut tracks: Vec<TrackFragmentSummary> = Vec::new();
    // Per ISO 14496-12, without explicit base offsets a traf's data follows the
    // previous traf's data; the first traf starts at the moof.
    let mut previous_data_end: Option<u64> = None;
    for child in iter_boxes(moof.payload, moof.header.payload_offset()) {
        let child = child?;
        match &child.header.kind {
            b"mfhd" => {
                if sequence_number.is_some() {
                    return Err(duplicate(&child.header, "moof"));
                }
                let (mut f, _version, _flags) = Fields::full_box(&child)?;
                sequence_number = Some(f.u32()?);
            }
            b"traf" => {
                if tracks.len() >= MAX_TRACK_FRAGMENTS {
                    return Err(Fmp4Error::TooMany {
                        kind: FourCc(*b"traf"),
                        max: MAX_TRACK_FRAGMENTS,
                        parent: "moof",
                    });
                }
                let summary = parse_traf(&child, ctx, previous_data_end)?;
                previous_data_end = summary.data_end.or(previous_data_end);
                tracks.push(summary);
            }
            _ => {}
        }
    }
    let sequence_number = sequence_number.ok_or(Fmp4Error::MissingBox {
        kind: FourCc(*b"mfhd"),
        parent: "moof",
    })?;
    if tracks.is_empty() {
        return Err(Fmp4Error::MissingBox {
            kind: FourCc(*b"traf"),
            parent: "moof",
        });
    }
    Ok((sequence_number, tracks))
}

fn duplicate(header: &BoxHeader, parent: &'static str) -> Fmp4Error {
    Fmp4Error::DuplicateBox {
        kind: header.fourcc(),
        offset: header.offset,
        parent,
    }
}

#[derive(Debug, Clone, Copy)]
struct Tfhd {
    track_id: u32,
    flags: u32,
    base_data_offset: Option<u64>,
    sample_description_index: Option<u32>,
    default_duration: Option<u32>,
    default_size: Option<u32>,
    default_flags: Option<u32>,
}

fn parse_tfhd(b: &BoxRef<'_>) -> Result<Tfhd> {
    let (mut f, _version, flags) = Fields::full_box(b)?;
    let track_id = f.u32()?;
    let opt_u32 = |f: &mut Fields<'_>, bit: u32| -> Result<Option<u32>> {
        if flags & bit != 0 {
            f.u32().map(Some)
        } else {
            Ok(None)
        }
    };
    let base_data_offset = if flags & TFHD_BASE_DATA_OFFSET != 0 {
        Some(f.u64()?)
    } else {
        None
    };
    let sample_description_index = opt_u32(&mut f, TFHD_SAMPLE_DESCRIPTION_INDEX)?;
    let default_duration = opt_u32(&mut f, TFHD_DEFAULT_DURATION)?;
    let default_size = opt_u32(&mut f, TFHD_DEFAULT_SIZE)?;
    let default_flags = opt_u32(&mut f, TFHD_DEFAULT_FLAGS)?;
    Ok(Tfhd {
        track_id,
        flags,
        base_data_offset,
        sample_description_index,
        default_duration,
        default_size,
        default_flags,
    })
}

fn parse_tfdt(b: &BoxRef<'_>) -> Result<u64> {
    let (mut f, version, _flags) = Fields::full_box(b)?;
    match version {
        0 => f.u32().map(u64::from),
        1 => f.u64(),
        v => Err(f.unsupported(v)),
    }
}

fn parse_traf(
    traf: &BoxRef<'_>,
    ctx: &MoofContext,
    previous_data_end: Option<u64>,
) -> Result<TrackFragmentSummary> {
    let mut tfhd = None;
    let mut tfdt = None;
    for child in iter_boxes(traf.payload, traf.header.payload_offset()) {
        let child = child?;
        match &child.header.kind {
            b"tfhd" => {
                if tfhd.is_some() {
                    return Err(duplicate(&child.header, "traf"));
                }
                tfhd = Some(parse_tfhd(&child)?);
            }
            b"tfdt" => {
                if tfdt.is_some() {
                    return Err(duplicate(&child.header, "traf"));
                }
                tfdt = Some(parse_tfdt(&child)?);
            }
            _ => {}
        }
    }
    let tfhd = tfhd.ok_or(Fmp4Error::MissingBox {
        kind: FourCc(*b"tfhd"),
        parent: "traf",
    })?;
    if tfhd.track_id == 0 {
        return Err(Fmp4Error::ZeroTrackId {
            kind: FourCc(*b"tfhd"),
            offset: traf.header.offset,
        });
    }
    let base = match tfhd.base_data_offset {
        Some(b) => b,
        None if tfhd.flags & TFHD_DEFAULT_BASE_IS_MOOF != 0 => ctx.moof_offset,
        None => previous_data_end.unwrap_or(ctx.moof_offset),
    };

    let mut summary = TrackFragmentSummary {
        track_id: tfhd.track_id,
        tfhd_flags: tfhd.flags,
        sample_description_index: tfhd.sample_description_index,
        base_media_decode_time: tfdt,
        trun_count: 0,
        sample_count: 0,
        total_duration: 0,
        total_sample_size: 0,
        first_sample_flags: None,
        first_sample_is_sync: false,
        data_start: None,
        data_end: None,
    };
    let mut first_sample_seen = false;
    let mut next_start = base;
    for child in iter_boxes(traf.payload, traf.header.payload_offset()) {
        let child = child?;
        if &child.header.kind != b"trun" {
            continue;
        }
        let run = parse_trun(&child, &tfhd)?;
        summary.trun_count = summary.trun_count.saturating_add(1);
        let start = match run.data_offset {
            Some(o) => {
                base.checked_add_signed(i64::from(o))
                    .ok_or(Fmp4Error::InvalidDataOffset {
                        track_id: tfhd.track_id,
                        offset: child.header.offset,
                        base,
                        data_offset: o,
                    })?
            }
            None => next_start,
        };
        let end = start
            .checked_add(run.total_size)
            .ok_or(Fmp4Error::Overflow {
                what: "a trun's data range",
            })?;
        if run.total_size > 0 {
            if start < ctx.mdat_start || end > ctx.mdat_end {
                return Err(Fmp4Error::SampleDataOutsideMdat {
                    track_id: tfhd.track_id,
                    offset: child.header.offset,
                    start,
                    end,
                    mdat_start: ctx.mdat_start,
                    mdat_end: ctx.mdat_end,
                });
            }
            summary.data_start = summary.data_start.or(Some(start));
            summary.data_end = Some(end);
        }
        next_start = end;
        if run.sample_count > 0 && !first_sample_seen {
            first_sample_seen = true;
            summary.first_sample_flags = run.first_sample_flags.or(tfhd.default_flags);
        }
        summary.sample_count = summary
            .sample_count
            .checked_add(u64::from(run.sample_count))
            .ok_or(Fmp4Error::Overflow {
                what: "the sample count",
            })?;
        summary.total_duration = summary
            .total_duration
            .checked_add(run.total_duration)
            .ok_or(Fmp4Error::Overflow {
                what: "the total sample duration",
            })?;
        summary.total_sample_size = summary
            .total_sample_size
            .checked_add(run.total_size)
            .ok_or(Fmp4Error::Overflow {
                what: "the total sample size",
            })?;
    }
    summary.first_sample_is_sync = summary
        .first_sample_flags
        .is_some_and(|f| f & SAMPLE_IS_NON_SYNC == 0);
    Ok(summary)
}

struct TrunSummary {
    sample_count: u32,
    data_offset: Option<i32>,
    /// first-sample-flags field, else the first per-sample flags.
    first_sample_flags: Option<u32>,
    total_duration: u64,
    total_size: u64,
}

fn parse_trun(b: &BoxRef<'_>, tfhd: &Tfhd) -> Result<TrunSummary> {
    let (mut f, version, flags) = Fields::full_box(b)?;
    if version > 1 {
        return Err(f.unsupported(version));
    }
    let sample_count = f.u32()?;
    let data_offset = if flags & TRUN_DATA_OFFSET != 0 {
        Some(f.i32()?)
    } else {
        None
    };
    let first_sample_flags_field = if flags & TRUN_FIRST_SAMPLE_FLAGS != 0 {
        Some(f.u32()?)
    } else {
        None
    };
    let has_duration = flags & TRUN_SAMPLE_DURATION != 0;
    let has_size = flags & TRUN_SAMPLE_SIZE != 0;
    let has_flags = flags & TRUN_SAMPLE_FLAGS != 0;
    let has_cto = flags & TRUN_SAMPLE_CTO != 0;
    let record_len: u64 = [has_duration, has_size, has_flags, has_cto]
        .iter()
        .filter(|&&x| x)
        .map(|_| 4u64)
        .sum();
    let available = len_u64(f.remaining());
    let needed = u64::from(sample_count)
        .checked_mul(record_len)
        .ok_or(Fmp4Error::Overflow {
            what: "the trun record length",
        })?;
    if needed > available {
        return Err(Fmp4Error::SampleCountTooLarge {
            offset: b.header.offset,
            sample_count,
            record_len,
            available,
        });
    }

    let mut sum_duration: u64 = 0;
    let mut sum_size: u64 = 0;
    let mut first_record_flags = None;
    if record_len > 0 {
        // Bounded: sample_count * record_len <= bytes in this box.
        for i in 0..sample_count {
            if has_duration {
                sum_duration =
                    sum_duration
                        .checked_add(u64::from(f.u32()?))
                        .ok_or(Fmp4Error::Overflow {
                            what: "the trun durations",
                        })?;
            }
            if has_size {
                sum_size =
                    sum_size
                        .checked_add(u64::from(f.u32()?))
                        .ok_or(Fmp4Error::Overflow {
                            what: "the trun sizes",
                        })?;
            }
            if has_flags {
                let sample_flags = f.u32()?;
                if i == 0 {
                    first_record_flags = Some(sample_flags);
                }
            }
            if has_cto {
                f.skip(4)?;
            }
        }
    }
    let count = u64::from(sample_count);
    let from_default = |default: Option<u32>, field: &'static str| -> Result<u64> {
        if count == 0 {
            return Ok(0);
        }
        let d = default.ok_or(Fmp4Error::MissingSampleDefault {
            track_id: tfhd.track_id,
            offset: b.header.offset,
            field,
        })?;
        count
            .checked_mul(u64::from(d))
            .ok_or(Fmp4Error::Overflow { what: field })
    };
    let total_duration = if has_duration {
        sum_duration
    } else {
        from_default(tfhd.default_duration, "duration")?
    };
    let total_size = if has_size {
        sum_size
    } else {
        from_default(tfhd.default_size, "size")?
    };
    Ok(TrunSummary {
        sample_count,
        data_offset,
        first_sample_flags: first_sample_flags_field.or(first_record_flags),
        total_duration,
        total_size,
    })
}

/// `trex` defaults for one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackExtends {
    pub default_sample_description_index: u32,
    pub default_sample_duration: u32,
    pub default_sample_size: u32,
    pub default_sample_flags: u32,
}

/// One `trak` of an init segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitTrack {
    pub track_id: u32,
    /// `hdlr` handler_type: `vide`, `soun`, ...
    pub handler_type: [u8; 4],
    /// `mdhd` timescale (never 0).
    pub timescale: u32,
    /// The matching `trex` in `mvex`, if any.
    pub trex: Option<TrackExtends>,
    /// The first sample entry of `stsd`, if the track has one.
    pub sample_entry: Option<SampleEntry>,
    /// `media_time` of the first non-empty edit of `edts/elst`, if any.
    pub edit_media_time: Option<i64>,
}

/// What the first `stsd` sample entry says about a track's coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleEntry {
    /// Sample entry format: `avc1`, `hvc1`, `vp09`, `av01`, `mp4a`, `Opus`, ...
    pub format: FourCc,
    /// Visual sample entries only.
    pub width: Option<u16>,
    pub height: Option<u16>,
    /// Audio sample entries only (integer part of the 16.16 rate).
    pub channels: Option<u16>,
    pub sample_rate: Option<u32>,
    /// The first codec configuration box (`avcC`, `hvcC`, `vpcC`, `av1C`,
    /// `esds`, `dOps`, `dfLa`, `dac3`, `dec3`) and its first 4 payload bytes
    /// (zero-padded), e.g. avcC's version, profile, compatibility, level.
    pub config: Option<(FourCc, [u8; 4])>,
}

const CONFIG_BOXES: [&[u8; 4]; 9] = [
    b"avcC", b"hvcC", b"vpcC", b"av1C", b"esds", b"dOps", b"dfLa", b"dac3", b"dec3",
];
const VISUAL_ENTRIES: [&[u8; 4]; 7] = [
    b"avc1", b"avc3", b"hvc1", b"hev1", b"vp09", b"av01", b"encv",
];

/// Parses one sample entry (the first child of `stsd`).
fn parse_sample_entry(entry: &BoxRef<'_>) -> Result<SampleEntry> {
    let mut f = Fields::new(entry);
    f.skip(8)?; // reserved(6) + data_reference_index(2)
    let visual = VISUAL_ENTRIES.contains(&&entry.header.kind);
    let (width, height, channels, sample_rate) = if visual {
        f.skip(16)?;
        let [w0, w1, h0, h1] = f.array::<4>()?;
        f.skip(50)?;
        (
            Some(u16::from_be_bytes([w0, w1])),
            Some(u16::from_be_bytes([h0, h1])),
            None,
            None,
        )
    } else {
        let [v0, v1] = f.array::<2>()?;
        // 0: ISO AudioSampleEntry; 1: QuickTime SoundDescription v1 (MOV files:
        // the same fields plus 16 bytes of packet sizes after the rate)
        let version = u16::from_be_bytes([v0, v1]);
        if version > 1 {
            return Err(Fmp4Error::UnsupportedVersion {
                kind: entry.header.fourcc(),
                offset: entry.header.offset,
                version: v1,
            });
        }
        f.skip(6)?;
        let [c0, c1] = f.array::<2>()?;
        f.skip(6)?; // samplesize, pre_defined, reserved
        let rate = f.u32()?;
        if version == 1 {
            f.skip(16)?;
        }
        (
            None,
            None,
            Some(u16::from_be_bytes([c0, c1])),
            Some(rate >> 16),
        )
    };
    let offset = entry
        .header
        .payload_offset()
        .checked_add(len_u64(f.pos))
        .ok_or(Fmp4Error::Overflow {
            what: "sample entry offset",
        })?;
    let mut config = None;
    for child in iter_boxes(tail(entry.payload, len_u64(f.pos)), offset) {
        let child = child?;
        if config.is_none() && CONFIG_BOXES.contains(&&child.header.kind) {
            let mut head = [0u8; 4];
            for (dst, src) in head.iter_mut().zip(child.payload.iter()) {
                *dst = *src;
            }
            config = Some((child.header.fourcc(), head));
        }
    }
    Ok(SampleEntry {
        format: entry.header.fourcc(),
        width,
        height,
        channels,
        sample_rate,
        config,
    })
}

/// `minf/stbl/stsd`'s first sample entry, if present.
fn find_sample_entry(mdia_child: &BoxRef<'_>) -> Result<Option<SampleEntry>> {
    for stbl in iter_boxes(mdia_child.payload, mdia_child.header.payload_offset()) {
        let stbl = stbl?;
        if &stbl.header.kind != b"stbl" {
            continue;
        }
        for stsd in iter_boxes(stbl.payload, stbl.header.payload_offset()) {
            let stsd = stsd?;
            if &stsd.header.kind != b"stsd" {
                continue;
            }
            let (f, _version, _flags) = Fields::full_box(&stsd)?;
            let mut f = f;
            f.skip(4)?; // entry_count
            let offset = stsd.header.payload_offset().saturating_add(8);
            if let Some(entry) = iter_boxes(tail(stsd.payload, 8), offset).next() {
                return parse_sample_entry(&entry?).map(Some);
            }
        }
    }
    Ok(None)
}

/// `media_time` of the first non-empty edit (an `elst` entry whose media_time is not -1).
fn parse_edts(edts: &BoxRef<'_>) -> Result<Option<i64>> {
    for elst in iter_boxes(edts.payload, edts.header.payload_offset()) {
        let elst = elst?;
        if &elst.header.kind != b"elst" {
            continue;
        }
        let (mut f, version, _flags) = Fields::full_box(&elst)?;
        let count = f.u32()?;
        // Edits are few; bound the walk anyway (each entry is at least 12 bytes).
        for _ in 0..count.min(64) {
            let media_time = match version {
                0 => {
                    f.skip(4)?;
                    i64::from(f.i32()?)
                }
                1 => {
                    f.skip(8)?;
                    i64::from_be_bytes(f.array::<8>()?)
                }
                v => return Err(f.unsupported(v)),
            };
            f.skip(4)?; // media_rate
            if media_time != -1 {
                return Ok(Some(media_time));
            }
        }
    }
    Ok(None)
}

impl InitTrack {
    pub fn is_video(&self) -> bool {
        &self.handler_type == b"vide"
    }

    pub fn is_audio(&self) -> bool {
        &self.handler_type == b"soun"
    }
}

/// Result of [`summarize_init_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitSummary {
    pub major_brand: [u8; 4],
    pub tracks: Vec<InitTrack>,
    pub total_len: u64,
}

/// Summarizes an init segment: `ftyp` first, exactly one `moov` holding at
/// least one `trak` (each with `tkhd`, `mdia/mdhd`, `mdia/hdlr`) and an
/// `mvex`; only `free`/`skip` may sit beside them. The whole `moov` tree is
/// checked with [`validate_box_tree`] rules.
pub fn summarize_init_segment(bytes: &[u8]) -> Result<InitSummary> {
    let mut major_brand = None;
    let mut moov = None;
    for (index, item) in iter_boxes(bytes, 0).enumerate() {
        let b = item?;
        let unexpected = |reason| Fmp4Error::UnexpectedBox {
            kind: b.header.fourcc(),
            offset: b.header.offset,
            reason,
        };
        if index == 0 && &b.header.kind != b"ftyp" {
            return Err(unexpected("an init segment must start with ftyp"));
        }
        match &b.header.kind {
            b"ftyp" => {
                if index != 0 {
                    return Err(duplicate(&b.header, "the init segment"));
                }
                let mut f = Fields::new(&b);
                major_brand = Some(f.array::<4>()?);
                f.skip(4)?; // minor_version
            }
            b"moov" => {
                if moov.is_some() {
                    return Err(duplicate(&b.header, "the init segment"));
                }
                moov = Some(b);
            }
            b"free" | b"skip" => {}
            _ => {
                return Err(unexpected(
                    "not allowed in an init segment (allowed: ftyp, moov, free, skip)",
                ))
            }
        }
    }
    let missing = |kind: &[u8; 4], parent| Fmp4Error::MissingBox {
        kind: FourCc(*kind),
        parent,
    };
    let major_brand = major_brand.ok_or_else(|| missing(b"ftyp", "the init segment"))?;
    let moov = moov.ok_or_else(|| missing(b"moov", "the init segment"))?;
    validate_children(moov.payload, moov.header.payload_offset(), 1)?;

    let mut tracks: Vec<InitTrack> = Vec::new();
    let mut trexes: Vec<(u32, TrackExtends)> = Vec::new();
    let mut mvex_seen = false;
    for child in iter_boxes(moov.payload, moov.header.payload_offset()) {
        let child = child?;
        match &child.header.kind {
            b"trak" => {
                if tracks.len() >= MAX_TRACKS {
                    return Err(Fmp4Error::TooMany {
                        kind: FourCc(*b"trak"),
                        max: MAX_TRACKS,
                        parent: "moov",
                    });
                }
                let track = parse_trak(&child)?;
                if tracks.iter().any(|t| t.track_id == track.track_id) {
                    return Err(Fmp4Error::DuplicateTrackId {
                        track_id: track.track_id,
                        kind: FourCc(*b"trak"),
                    });
                }
                tracks.push(track);
            }
            b"mvex" => {
                if mvex_seen {
                    return Err(duplicate(&child.header, "moov"));
                }
                mvex_seen = true;
                for item in iter_boxes(child.payload, child.header.payload_offset()) {
                    let trex = item?;
                    if &trex.header.kind != b"trex" {
                        continue;
                    }
                    if trexes.len() >= MAX_TRACKS {
                        return Err(Fmp4Error::TooMany {
                            kind: FourCc(*b"trex"),
                            max: MAX_TRACKS,
                            parent: "mvex",
                        });
                    }
                    let (mut f, _version, _flags) = Fields::full_box(&trex)?;
                    let track_id = f.u32()?;
                    if trexes.iter().any(|(id, _)| *id == track_id) {
                        return Err(Fmp4Error::DuplicateTrackId {
                            track_id,
                            kind: FourCc(*b"trex"),
                        });
                    }
                    let defaults = TrackExtends {
                        default_sample_description_index: f.u32()?,
                        default_sample_duration: f.u32()?,
                        default_sample_size: f.u32()?,
                        default_sample_flags: f.u32()?,
                    };
                    trexes.push((track_id, defaults));
                }
            }
            _ => {}
        }
    }
    if !mvex_seen {
        return Err(missing(b"mvex", "moov (not a fragmented MP4 init segment)"));
    }
    if tracks.is_empty() {
        return Err(missing(b"trak", "moov"));
    }
    for track in &mut tracks {
        track.trex = trexes
            .iter()
            .find(|(id, _)| *id == track.track_id)
            .map(|(_, t)| *t);
    }
    Ok(InitSummary {
        major_brand,
        tracks,
        total_len: len_u64(bytes.len()),
    })
}

fn parse_trak(trak: &BoxRef<'_>) -> Result<InitTrack> {
    let mut track_id = None;
    let mut mdia = None;
    let mut edit_media_time = None;
    for child in iter_boxes(trak.payload, trak.header.payload_offset()) {
        let child = child?;
        match &child.header.kind {
            b"tkhd" => {
                if track_id.is_some() {
                    return Err(duplicate(&child.header, "trak"));
                }
                let (mut f, version, _flags) = Fields::full_box(&child)?;
                match version {
                    0 => f.skip(8)?,
                    1 => f.skip(16)?,
                    v => return Err(f.unsupported(v)),
                }
                let id = f.u32()?;
                if id == 0 {
                    return Err(Fmp4Error::ZeroTrackId {
                        kind: child.header.fourcc(),
                        offset: child.header.offset,
                    });
                }
                track_id = Some(id);
            }
            b"mdia" => {
                if mdia.is_some() {
                    return Err(duplicate(&child.header, "trak"));
                }
                mdia = Some(child);
            }
            b"edts" => edit_media_time = parse_edts(&child)?,
            _ => {}
        }
    }
    let track_id = track_id.ok_or(Fmp4Error::MissingBox {
        kind: FourCc(*b"tkhd"),
        parent: "trak",
    })?;
    let mdia = mdia.ok_or(Fmp4Error::MissingBox {
        kind: FourCc(*b"mdia"),
        parent: "trak",
    })?;
    let mut timescale = None;
    let mut handler_type = None;
    let mut sample_entry = None;
    for child in iter_boxes(mdia.payload, mdia.header.payload_offset()) {
        let child = child?;
        match &child.header.kind {
            b"minf" => sample_entry = find_sample_entry(&child)?,
            b"mdhd" => {
                if timescale.is_some() {
                    return Err(duplicate(&child.header, "mdia"));
                }
                let (mut f, version, _flags) = Fields::full_box(&child)?;
                match version {
                    0 => f.skip(8)?,
                    1 => f.skip(16)?,
                    v => return Err(f.unsupported(v)),
                }
                timescale = Some(f.u32()?);
            }
            b"hdlr" => {
                if handler_type.is_some() {
                    return Err(duplicate(&child.header, "mdia"));
                }
                let (mut f, _version, _flags) = Fields::full_box(&child)?;
                f.skip(4)?; // pre_defined
                handler_type = Some(f.array::<4>()?);
            }
            _ => {}
        }
    }
    let timescale = timescale.ok_or(Fmp4Error::MissingBox {
        kind: FourCc(*b"mdhd"),
        parent: "mdia",
    })?;
    if timescale == 0 {
        return Err(Fmp4Error::ZeroTimescale { track_id });
    }
    let handler_type = handler_type.ok_or(Fmp4Error::MissingBox {
        kind: FourCc(*b"hdlr"),
        parent: "mdia",
    })?;
    Ok(InitTrack {
        track_id,
        handler_type,
        timescale,
        trex: None,
        sample_entry,
        edit_media_time,
    })
}
