//! Reads an MP4/MOV file's structure: the top-level box headers and the `moov`,
//! never the media data — the same whether the moov is at the start or the end,
//! for files of any size. Every box size is checked (`boxes.rs`) before the `mp4`
//! crate parses the movie header and sample tables, and that parse runs under a
//! time limit. Mirrors the page's `analyze.ts`: one video and up to three audio tracks
//! are streamed (named by `track_names`), the others are listed as ignored.

use std::fs::File;
use std::io::Cursor;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mp4::ReadBox;

use crate::boxes::{self, be_u32, children, find, fourcc_str, FourCc, RawBox, TopBox};
use crate::codec::{entry_info, EntryInfo};
use crate::error::{MediaError, MediaErrorKind};
use crate::init::{self, InitParts};
use crate::planner::{PlanTrackInput, SampleTable, TrackKind};
use crate::track_names;

const MAX_MOOV_BYTES: u64 = 512 * 1024 * 1024;

/// How the edit list was handled (as the page: one plain edit becomes the PTO).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditList {
    None,
    Stripped,
    Kept,
}

/// A streamed track: its plan input plus what the segments and the manifest need.
#[derive(Debug, Clone)]
pub struct SourceTrack {
    pub input: PlanTrackInput,
    pub info: EntryInfo,
    pub edit_list: EditList,
    /// file offset of every sample
    pub offsets: Vec<u64>,
    /// composition offset of every sample as the fragments carry it: cts - dts, minus
    /// `composition_shift`
    pub cts_offsets: Vec<i32>,
    /// A stripped edit folded into the composition offsets instead of the manifests'
    /// presentation_time_offset (see `folded_edit`); 0 = none.
    pub composition_shift: u64,
    /// ftyp + moov(mvhd, trak, mvex) for this track alone
    pub init_segment: Vec<u8>,
    /// BCP 47, from the mdhd (none = undetermined)
    pub language: Option<String>,
    /// the name a player's track menu shows
    pub label: Option<String>,
    /// the audio track players pick first (exactly one audio track has it)
    pub default: bool,
}

#[derive(Debug, Clone)]
pub struct Analysis {
    pub file_size: u64,
    /// seconds, lead track
    pub duration: f64,
    pub tracks: Vec<SourceTrack>,
    /// tracks in the file that are not streamed: (track id, handler, codec)
    pub ignored: Vec<(u32, String, String)>,
    pub moov_bytes: u64,
}

impl Analysis {
    /// Resuming: makes the fragments agree with the presentation_time_offset each track's
    /// session was created with (its MPD and playlists carry them). `sent` is what was
    /// stored with the session; a session stored before edits were folded has none: each
    /// track's whole edit was its PTO, so nothing is folded for it. False, with nothing
    /// changed, when the offsets cannot be matched (the session is not this file's).
    pub fn match_session_offsets(&mut self, sent: Option<&[u64]>) -> bool {
        if sent.is_some_and(|s| s.len() != self.tracks.len()) {
            return false;
        }
        let mut shifts = Vec::with_capacity(self.tracks.len());
        for (i, t) in self.tracks.iter().enumerate() {
            let pto = t.input.pto;
            let Some(shift) = pto.checked_sub(sent.map_or(pto, |s| s[i])) else {
                return false;
            };
            // the fold this track allows, read from its offsets as the file has them
            let possible = if t.composition_shift > 0 {
                t.composition_shift
            } else {
                folded_edit(t.input.kind, t.edit_list, pto, &t.cts_offsets)
            };
            if shift != 0 && shift != possible {
                return false;
            }
            shifts.push(shift);
        }
        for (t, shift) in self.tracks.iter_mut().zip(shifts) {
            // both are at most the first offset, an i32 (folded_edit)
            let delta = shift as i64 - t.composition_shift as i64;
            for c in &mut t.cts_offsets {
                *c = (i64::from(*c) - delta).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
            }
            t.composition_shift = shift;
        }
        true
    }
}

fn corrupt_moov() -> MediaError {
    MediaError::corrupt("The file is damaged: its movie header ('moov' box) cannot be read.")
}

/// The raw boxes of one trak that the plan and the init segment need.
struct RawTrak {
    tkhd: RawBox,
    edts: Option<RawBox>,
    mdhd: RawBox,
    handler: FourCc,
    media_header: Option<RawBox>,
    stsd: RawBox,
    tables: Vec<RawBox>,
    language: Option<String>,
    label: Option<String>,
    /// tkhd flag 1: ffmpeg enables one audio track per alternate group
    enabled: bool,
}

const TABLES: &[&[u8; 4]] = &[
    b"stts", b"ctts", b"stss", b"stsc", b"stsz", b"stco", b"co64",
];

/// Entry sizes of the tables, to check counts against the box before anything allocates.
fn check_table(buf: &[u8], b: &RawBox) -> Result<(), MediaError> {
    let payload = (b.end - b.body) as u64;
    let count_at = b.body + if &b.kind == b"stsz" { 8 } else { 4 };
    let per = match &b.kind {
        b"stts" | b"ctts" => 8,
        b"stsc" => 12,
        b"stss" | b"stco" => 4,
        b"co64" => 8,
        b"stsz" if be_u32(buf, b.body + 4).unwrap_or(1) == 0 => 4,
        _ => 0,
    };
    let count = u64::from(be_u32(buf, count_at).ok_or_else(corrupt_moov)?);
    let header = (count_at - b.body) as u64 + 4;
    if header > payload || count * per > payload - header {
        return Err(MediaError::corrupt(format!(
            "The file is damaged: its '{}' table declares {count} entries, more than its box holds.",
            fourcc_str(&b.kind)
        )));
    }
    Ok(())
}

fn raw_trak(buf: &[u8], trak: &RawBox) -> Result<RawTrak, MediaError> {
    let kids = children(buf, trak.body, trak.end)?;
    let tkhd = *find(&kids, b"tkhd").ok_or_else(corrupt_moov)?;
    let edts = find(&kids, b"edts").copied();
    let mdia = find(&kids, b"mdia").ok_or_else(corrupt_moov)?;
    let mdia_kids = children(buf, mdia.body, mdia.end)?;
    let mdhd = *find(&mdia_kids, b"mdhd").ok_or_else(corrupt_moov)?;
    let hdlr = find(&mdia_kids, b"hdlr").ok_or_else(corrupt_moov)?;
    let mut handler = [0u8; 4];
    handler.copy_from_slice(
        buf.get(hdlr.body + 8..hdlr.body + 12)
            .ok_or_else(corrupt_moov)?,
    );
    let minf = find(&mdia_kids, b"minf").ok_or_else(corrupt_moov)?;
    let minf_kids = children(buf, minf.body, minf.end)?;
    let media_header = find(&minf_kids, b"vmhd")
        .or_else(|| find(&minf_kids, b"smhd"))
        .copied();
    let stbl = find(&minf_kids, b"stbl").ok_or_else(corrupt_moov)?;
    let stbl_kids = children(buf, stbl.body, stbl.end)?;
    let stsd = *find(&stbl_kids, b"stsd").ok_or_else(corrupt_moov)?;
    if find(&stbl_kids, b"stz2").is_some() && find(&stbl_kids, b"stsz").is_none() {
        return Err(MediaError::new(
            MediaErrorKind::Unsupported,
            "This file uses compact sample sizes ('stz2'), which are not supported.",
        ));
    }
    let mut tables = Vec::new();
    for b in &stbl_kids {
        if TABLES.contains(&&b.kind) {
            check_table(buf, b)?;
            tables.push(*b);
        }
    }
    if let Some(edts) = &edts {
        for elst in children(buf, edts.body, edts.end)? {
            if &elst.kind == b"elst" {
                let v1 = buf.get(elst.body).copied().unwrap_or(0) == 1;
                let count = u64::from(be_u32(buf, elst.body + 4).ok_or_else(corrupt_moov)?);
                let per = if v1 { 20 } else { 12 };
                if 8 + count * per > (elst.end - elst.body) as u64 {
                    return Err(MediaError::corrupt(
                        "The file is damaged: its edit list declares more entries than it holds.",
                    ));
                }
            }
        }
    }
    for (b, min) in [(&tkhd, 92usize), (&mdhd, 32)] {
        if b.end - b.start < min {
            return Err(corrupt_moov());
        }
    }
    let label = track_names::track_label(
        track_names::udta_name(buf, &kids).as_deref(),
        track_names::hdlr_name(buf, hdlr).as_deref(),
    );
    Ok(RawTrak {
        tkhd,
        edts,
        mdhd,
        handler,
        media_header,
        stsd,
        tables,
        language: track_names::mdhd_language(buf, &mdhd),
        label,
        enabled: buf.get(tkhd.body + 3).is_some_and(|f| f & 1 == 1),
    })
}

fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.extend_from_slice(&((payload.len() + 8) as u32).to_be_bytes());
    v.extend_from_slice(kind);
    v.extend_from_slice(payload);
    v
}

/// The same box with a plain 32-bit header (what the `mp4` crate's readers expect).
fn rebox(buf: &[u8], b: &RawBox) -> Vec<u8> {
    boxed(&b.kind, b.payload(buf))
}

/// A moov holding only boxes that passed the checks, in the shape the `mp4` crate
/// reads: sample entries (which it does not know for AV1, Opus, hvc1…) are
/// replaced by a placeholder and read by `codec.rs` instead.
fn sanitized_moov(buf: &[u8], mvhd: &RawBox, traks: &[RawTrak]) -> Vec<u8> {
    let mut moov = rebox(buf, mvhd);
    for t in traks {
        let mut stbl = boxed(
            b"stsd",
            &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 8, b'f', b'r', b'e', b'e'],
        );
        for tb in &t.tables {
            stbl.extend(rebox(buf, tb));
        }
        let mut minf = Vec::new();
        if let Some(mh) = &t.media_header {
            minf.extend(rebox(buf, mh));
        }
        minf.extend(boxed(b"dinf", &boxed(b"dref", &[0, 0, 0, 0, 0, 0, 0, 0])));
        minf.extend(boxed(b"stbl", &stbl));
        let mut hdlr = vec![0u8; 8];
        hdlr.extend_from_slice(&t.handler);
        hdlr.extend_from_slice(&[0u8; 13]);
        let mut mdia = rebox(buf, &t.mdhd);
        mdia.extend(boxed(b"hdlr", &hdlr));
        mdia.extend(boxed(b"minf", &minf));
        let mut trak = rebox(buf, &t.tkhd);
        if let Some(edts) = &t.edts {
            let mut e = Vec::new();
            for k in children(buf, edts.body, edts.end).unwrap_or_default() {
                if &k.kind == b"elst" {
                    e.extend(rebox(buf, &k));
                }
            }
            trak.extend(boxed(b"edts", &e));
        }
        trak.extend(boxed(b"mdia", &mdia));
        moov.extend(boxed(b"trak", &trak));
    }
    boxed(b"moov", &moov)
}

/// Parses the sanitized moov with the `mp4` crate on its own thread, under a time limit.
fn parse_moov(bytes: Vec<u8>) -> Result<mp4::MoovBox, MediaError> {
    let limit = Duration::from_millis(1000 + (bytes.len() as u64 / (20 * 1024)));
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("moov-parse".into())
        .spawn(move || {
            let size = bytes.len() as u64;
            let mut cur = Cursor::new(bytes);
            cur.set_position(8);
            let _ = tx.send(mp4::MoovBox::read_box(&mut cur, size));
        })
        .map_err(|e| MediaError::corrupt(format!("cannot start the moov parser: {e}")))?;
    match rx.recv_timeout(limit) {
        Ok(Ok(moov)) => Ok(moov),
        Ok(Err(e)) => Err(MediaError::corrupt(format!(
            "The file is damaged: its movie header ('moov' box) cannot be read ({e})."
        ))),
        Err(_) => Err(MediaError::corrupt(
            "The file is damaged: reading its movie header ('moov' box) took too long.",
        )),
    }
}

struct Tables {
    table: SampleTable,
    offsets: Vec<u64>,
    cts: Vec<i32>,
    max_end: u64,
    mixed_descriptions: bool,
}

/// The sample table from the stbl boxes, exactly as mp4box's buildTrakSampleLists
/// (and the page's `stblTables`) derive it: same chunk walk, same stts/ctts run
/// indexing, the last sample lasting up to the media duration. Indexes the file
/// does not back up (a chunk or run that does not exist) are refused.
fn sample_tables(moov: &mp4::MoovBox, trak_index: usize) -> Result<Tables, MediaError> {
    let bad = |what: &str| {
        MediaError::corrupt(format!(
            "The file is damaged: its sample table is inconsistent ({what})."
        ))
    };
    let trak = moov.traks.get(trak_index).ok_or_else(corrupt_moov)?;
    let stbl = &trak.mdia.minf.stbl;
    let media_duration = trak.mdia.mdhd.duration;
    let count = if stbl.stsz.sample_size == 0 {
        stbl.stsz.sample_sizes.len()
    } else {
        stbl.stsz.sample_count as usize
    };
    let size_of = |j: usize| -> u64 {
        if stbl.stsz.sample_size == 0 {
            u64::from(stbl.stsz.sample_sizes.get(j).copied().unwrap_or(0))
        } else {
            u64::from(stbl.stsz.sample_size)
        }
    };
    let chunk_offsets: Vec<u64> = match (&stbl.stco, &stbl.co64) {
        (Some(stco), _) => stco.entries.iter().map(|&o| u64::from(o)).collect(),
        (None, Some(co64)) => co64.entries.clone(),
        (None, None) => return Err(bad("no chunk offsets")),
    };
    let stsc = &stbl.stsc.entries;
    let stts = &stbl.stts.entries;
    let stss = stbl.stss.as_ref().map(|b| &b.entries);
    let ctts = stbl.ctts.as_ref().map(|b| &b.entries);
    if count > 0 && (stsc.is_empty() || stts.is_empty()) {
        return Err(bad("missing stsc or stts entries"));
    }
    let mut t = Tables {
        table: SampleTable::with_capacity(count),
        offsets: Vec::with_capacity(count),
        cts: Vec::with_capacity(if ctts.is_some() { count } else { 0 }),
        max_end: 0,
        mixed_descriptions: false,
    };
    let mut chunk_index = 1usize;
    let mut chunk_run = 0usize;
    let mut last_chunk_in_run = usize::MAX;
    let mut last_sample_in_chunk = 0u64;
    let mut offset_in_chunk = 0u64;
    let mut last_sample_in_stts_run: i64 = -1;
    let mut stts_run: i64 = -1;
    let mut last_sample_in_ctts_run: i64 = -1;
    let mut ctts_run: i64 = -1;
    let mut stss_index = 0usize;
    let mut first_description = 0u32;
    let mut dts = 0u64;
    for j in 0..count {
        let sz = size_of(j);
        if j == 0 {
            chunk_index = 1;
            chunk_run = 0;
            last_sample_in_chunk = u64::from(stsc[0].samples_per_chunk);
            offset_in_chunk = 0;
            last_chunk_in_run = stsc
                .get(1)
                .map_or(usize::MAX, |e| (e.first_chunk as usize).saturating_sub(1));
        } else if j as u64 >= last_sample_in_chunk {
            chunk_index += 1;
            offset_in_chunk = 0;
            if chunk_index > last_chunk_in_run {
                chunk_run += 1;
                last_chunk_in_run = stsc
                    .get(chunk_run + 1)
                    .map_or(usize::MAX, |e| (e.first_chunk as usize).saturating_sub(1));
            }
            last_sample_in_chunk += u64::from(
                stsc.get(chunk_run)
                    .ok_or_else(|| bad("stsc run"))?
                    .samples_per_chunk,
            );
        }
        let description = stsc
            .get(chunk_run)
            .ok_or_else(|| bad("stsc run"))?
            .sample_description_index;
        if j == 0 {
            first_description = description;
        } else if description != first_description {
            t.mixed_descriptions = true;
        }
        let chunk = *chunk_offsets
            .get(chunk_index - 1)
            .ok_or_else(|| bad("chunk beyond the chunk offset table"))?;
        let offset = chunk
            .checked_add(offset_in_chunk)
            .ok_or_else(|| bad("offset overflow"))?;
        offset_in_chunk += sz;
        t.max_end = t.max_end.max(offset.saturating_add(sz));
        if j as i64 > last_sample_in_stts_run && (stts_run + 1) < stts.len() as i64 {
            stts_run += 1;
            if last_sample_in_stts_run < 0 {
                last_sample_in_stts_run = 0;
            }
            last_sample_in_stts_run += i64::from(stts[stts_run as usize].sample_count);
        }
        if j > 0 {
            let delta = stts[stts_run as usize].sample_delta;
            t.table.duration.push(delta);
            dts += u64::from(delta);
        }
        t.table.dts.push(dts);
        t.table.size.push(sz as u32);
        t.offsets.push(offset);
        if let Some(ctts) = ctts {
            if j as i64 >= last_sample_in_ctts_run && (ctts_run + 1) < ctts.len() as i64 {
                ctts_run += 1;
                if last_sample_in_ctts_run < 0 {
                    last_sample_in_ctts_run = 0;
                }
                last_sample_in_ctts_run += i64::from(ctts[ctts_run as usize].sample_count);
            }
            let off = if ctts_run >= 0 {
                ctts[ctts_run as usize].sample_offset
            } else {
                0
            };
            t.cts.push(off);
        }
        let sync = match stss {
            Some(list) => {
                if list
                    .get(stss_index)
                    .is_some_and(|&n| u64::from(n) == j as u64 + 1)
                {
                    stss_index += 1;
                    true
                } else {
                    false
                }
            }
            None => true,
        };
        t.table.sync.push(sync);
    }
    if count > 0 {
        t.table.duration.push(
            u32::try_from(media_duration.saturating_sub(dts))
                .map_err(|_| bad("last sample duration"))?,
        );
    }
    if t.cts.is_empty() {
        t.cts = vec![0; count];
    }
    Ok(t)
}

fn track_kind(handler: &FourCc) -> Option<TrackKind> {
    match handler {
        b"vide" => Some(TrackKind::Video),
        b"soun" => Some(TrackKind::Audio),
        _ => None,
    }
}

/// A single edit at media_time M becomes presentation_time_offset M with the edts
/// removed; anything more complex keeps the elst and PTO 0 (as the page).
fn edit_list(moov: &mp4::MoovBox, trak_index: usize) -> (u64, EditList) {
    let Some(trak) = moov.traks.get(trak_index) else {
        return (0, EditList::None);
    };
    let entries = trak
        .edts
        .as_ref()
        .and_then(|e| e.elst.as_ref())
        .map(|e| e.entries.as_slice())
        .unwrap_or(&[]);
    match entries {
        [] => (0, EditList::None),
        [only] if (only.media_time as i64) >= 0 && only.media_rate == 1 => {
            (only.media_time, EditList::Stripped)
        }
        _ => (0, EditList::Kept),
    }
}

/// The stripped edit of a video track that goes into its composition offsets (signed,
/// trun version 1) instead of the presentation_time_offset, so decode and presentation
/// both start at 0: with the edit as PTO, players set `timestampOffset = -PTO`, the first
/// keyframe decodes before 0, WebKit drops its GOP and then deadlocks on the player's seek
/// past the gap (docs/webkit.md). Only an edit no larger than the first sample's offset
/// (ffmpeg's B-frame delay), so no frame is presented before 0. As the page does.
fn folded_edit(kind: TrackKind, edit: EditList, pto: u64, cts_offsets: &[i32]) -> u64 {
    match cts_offsets.first() {
        Some(&first)
            if kind == TrackKind::Video
                && edit == EditList::Stripped
                && pto > 0
                && i64::from(first) >= pto as i64 =>
        {
            pto
        }
        _ => 0,
    }
}

pub fn analyze_file(path: &Path) -> Result<Analysis, MediaError> {
    let file = File::open(path).map_err(|e| {
        MediaError::new(
            MediaErrorKind::NotMp4,
            format!("Cannot open the file: {e}."),
        )
    })?;
    let meta = file.metadata().map_err(|e| {
        MediaError::new(
            MediaErrorKind::NotMp4,
            format!("Cannot read the file: {e}."),
        )
    })?;
    if !meta.is_file() {
        return Err(MediaError::new(
            MediaErrorKind::NotMp4,
            "This is not a regular file.",
        ));
    }
    analyze(&file, meta.len())
}

pub fn analyze(file: &File, file_size: u64) -> Result<Analysis, MediaError> {
    let started = Instant::now();
    let top = boxes::scan_top_level(file, file_size)?;
    if top.iter().any(|b| &b.kind == b"moof") {
        return Err(MediaError::new(
            MediaErrorKind::Fragmented,
            "This MP4 is already fragmented (moof boxes); such files are not supported yet.",
        ));
    }
    let moovs: Vec<&TopBox> = top.iter().filter(|b| &b.kind == b"moov").collect();
    let moov_box = match moovs.as_slice() {
        [] => {
            return Err(MediaError::new(
                MediaErrorKind::Truncated,
                "This file has no movie header ('moov' box). It is probably truncated: an MP4 being written or cut short keeps this header at the end.",
            ))
        }
        [one] => **one,
        _ => return Err(MediaError::corrupt("This file has more than one movie header ('moov').")),
    };
    if moov_box.size > MAX_MOOV_BYTES {
        return Err(MediaError::new(
            MediaErrorKind::Unsupported,
            "The movie header of this file is too large.",
        ));
    }
    let mut buf = vec![0u8; moov_box.size as usize];
    boxes::read_exact_at(file, &mut buf, moov_box.start)?;
    let whole = children(&buf, 0, buf.len())?;
    let moov = whole.first().ok_or_else(corrupt_moov)?;
    let moov_kids = children(&buf, moov.body, moov.end)?;
    if find(&moov_kids, b"mvex").is_some() {
        return Err(MediaError::new(
            MediaErrorKind::Fragmented,
            "This MP4 is a fragmented MP4; such files are not supported yet.",
        ));
    }
    let mvhd = *find(&moov_kids, b"mvhd").ok_or_else(corrupt_moov)?;
    if mvhd.end - mvhd.start < 108 {
        return Err(corrupt_moov());
    }
    // one video and up to MAX_AUDIO_TRACKS audio tracks are streamed, in file order;
    // the rest is listed as ignored
    let mut raw = Vec::new();
    let mut ignored = Vec::new();
    for trak in moov_kids.iter().filter(|b| &b.kind == b"trak") {
        let t = raw_trak(&buf, trak)?;
        raw.push(t);
    }
    let parsed = parse_moov(sanitized_moov(&buf, &mvhd, &raw))?;
    if parsed.traks.len() != raw.len() {
        return Err(corrupt_moov());
    }
    let mut tracks: Vec<SourceTrack> = Vec::new();
    let (mut have_video, mut audio_tracks) = (false, 0usize);
    for (i, rt) in raw.iter().enumerate() {
        let ptrak = &parsed.traks[i];
        let id = ptrak.tkhd.track_id;
        let kind = track_kind(&rt.handler);
        let stsd_kids = children(&buf, rt.stsd.body + 8, rt.stsd.end).unwrap_or_default();
        let info = stsd_kids
            .first()
            .map(|e| entry_info(&buf, e, kind == Some(TrackKind::Video)))
            .unwrap_or(EntryInfo {
                codec: "unknown".into(),
                width: None,
                height: None,
                sample_rate: None,
                channels: None,
            });
        let taken = match kind {
            Some(TrackKind::Video) => have_video,
            Some(TrackKind::Audio) => audio_tracks >= track_names::MAX_AUDIO_TRACKS,
            None => true,
        };
        let Some(kind) = kind.filter(|_| !taken && !stsd_kids.is_empty()) else {
            ignored.push((id, fourcc_str(&rt.handler), info.codec));
            continue;
        };
        let tables = sample_tables(&parsed, i)?;
        if tables.table.count() == 0 {
            if kind == TrackKind::Video {
                return Err(MediaError::corrupt(format!(
                    "The file is damaged or incomplete: its video track ({}) has no frames.",
                    info.codec
                )));
            }
            ignored.push((id, fourcc_str(&rt.handler), info.codec));
            continue;
        }
        if stsd_kids.len() > 1 && tables.mixed_descriptions {
            return Err(MediaError::new(
                MediaErrorKind::Unsupported,
                format!("Track {id} changes its codec settings midway (several sample descriptions); this is not supported."),
            ));
        }
        if tables.max_end > file_size {
            let what = if kind == TrackKind::Video {
                "video"
            } else {
                "audio"
            };
            return Err(MediaError::new(
                MediaErrorKind::Truncated,
                format!(
                    "The file is truncated: its {what} data should extend to byte {} but the file has only {file_size} bytes.",
                    tables.max_end
                ),
            ));
        }
        let timescale = ptrak.mdia.mdhd.timescale;
        if timescale == 0 {
            return Err(MediaError::corrupt(format!(
                "The file is damaged: track {id} has no timescale."
            )));
        }
        if kind == TrackKind::Video {
            have_video = true;
        } else {
            audio_tracks += 1;
        }
        let (pto, edit) = edit_list(&parsed, i);
        let init_segment = init::init_segment(&InitParts {
            buf: &buf,
            mvhd: &mvhd,
            tkhd: &rt.tkhd,
            edts: if edit == EditList::Kept {
                rt.edts.as_ref()
            } else {
                None
            },
            mdhd: &rt.mdhd,
            handler: &rt.handler,
            media_header: rt.media_header.as_ref(),
            stsd: &rt.stsd,
            track_id: id,
            is_video: kind == TrackKind::Video,
        });
        let mut info = info;
        if kind == TrackKind::Audio && info.sample_rate.is_none_or(|r| r == 0) {
            info.sample_rate = Some(timescale);
        }
        if kind == TrackKind::Audio && info.channels.is_none_or(|c| c == 0) {
            info.channels = Some(2);
        }
        let composition_shift = folded_edit(kind, edit, pto, &tables.cts);
        let mut cts_offsets = tables.cts;
        if composition_shift > 0 {
            // folded_edit bounds the shift by the first offset, an i32
            let shift = composition_shift as i32;
            for c in &mut cts_offsets {
                *c = c.saturating_sub(shift);
            }
        }
        tracks.push(SourceTrack {
            input: PlanTrackInput {
                id,
                kind,
                timescale,
                pto,
                samples: tables.table,
            },
            info,
            edit_list: edit,
            offsets: tables.offsets,
            cts_offsets,
            composition_shift,
            init_segment,
            language: rt.language.clone(),
            label: rt.label.clone(),
            default: kind == TrackKind::Audio && rt.enabled,
        });
    }
    if tracks.is_empty() {
        return Err(MediaError::new(
            MediaErrorKind::NoTracks,
            "This file contains no video or audio track that could be streamed.",
        ));
    }
    tracks.sort_by_key(|t| t.input.kind != TrackKind::Video);
    // the default audio track: the first enabled one, else the first (as the page)
    let audio: Vec<usize> = (0..tracks.len())
        .filter(|&i| tracks[i].input.kind == TrackKind::Audio)
        .collect();
    let default = audio
        .iter()
        .copied()
        .find(|&i| tracks[i].default)
        .or(audio.first().copied());
    for (i, t) in tracks.iter_mut().enumerate() {
        t.default = Some(i) == default;
    }
    let lead = &tracks[0].input;
    let duration = (lead.samples.end() as f64 - lead.pto as f64) / f64::from(lead.timescale);
    let _ = started;
    Ok(Analysis {
        file_size,
        duration,
        tracks,
        ignored,
        moov_bytes: moov_box.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::SampleTable;

    /// A track as analyze_file leaves it: its offsets folded when its edit allows.
    fn track(kind: TrackKind, pto: u64, edit: EditList, file_offsets: &[i32]) -> SourceTrack {
        let shift = folded_edit(kind, edit, pto, file_offsets);
        SourceTrack {
            input: PlanTrackInput {
                id: 1,
                kind,
                timescale: 15_360,
                pto,
                samples: SampleTable::with_capacity(0),
            },
            info: EntryInfo::bare("test"),
            edit_list: edit,
            offsets: Vec::new(),
            cts_offsets: file_offsets.iter().map(|c| c - shift as i32).collect(),
            composition_shift: shift,
            init_segment: Vec::new(),
            language: None,
            label: None,
            default: false,
        }
    }

    fn analysis(tracks: Vec<SourceTrack>) -> Analysis {
        Analysis {
            file_size: 0,
            duration: 0.0,
            tracks,
            ignored: Vec::new(),
            moov_bytes: 0,
        }
    }

    #[test]
    fn a_resumed_session_keeps_the_offsets_it_was_created_with() {
        let file = [1024, 3072, 0, 512];
        let mut a = analysis(vec![
            track(TrackKind::Video, 1024, EditList::Stripped, &file),
            track(TrackKind::Audio, 1024, EditList::Stripped, &[0, 0]),
        ]);
        assert_eq!(a.tracks[0].cts_offsets, [0, 2048, -1024, -512]);
        // created by this version: the fold stays
        assert!(a.match_session_offsets(Some(&[0, 1024])));
        assert_eq!(a.tracks[0].cts_offsets, [0, 2048, -1024, -512]);
        // stored before edits were folded: its MPD has PTO 1024, the parts keep the file's offsets
        assert!(a.match_session_offsets(None));
        assert_eq!(a.tracks[0].cts_offsets, file);
        assert_eq!(a.tracks[0].composition_shift, 0);
        // offsets this file cannot have, or not one per track: refused, nothing changed
        assert!(!a.match_session_offsets(Some(&[512, 1024])));
        assert!(!a.match_session_offsets(Some(&[0])));
        assert!(!a.match_session_offsets(Some(&[2048, 1024])));
        assert_eq!(a.tracks[0].cts_offsets, file);
        // and back to folded
        assert!(a.match_session_offsets(Some(&[0, 1024])));
        assert_eq!(a.tracks[0].cts_offsets, [0, 2048, -1024, -512]);
        assert_eq!(a.tracks[0].composition_shift, 1024);
    }

    #[test]
    fn a_b_frame_delay_edit_of_a_video_is_folded_into_its_composition_offsets() {
        // x264 with 2 B-frames at 15360/s: first sample (the IDR) offset 1024, edit 1024
        let offsets = [1024, 3072, 0, 512, 1536];
        assert_eq!(
            folded_edit(TrackKind::Video, EditList::Stripped, 1024, &offsets),
            1024
        );
    }

    #[test]
    fn edits_that_would_present_a_frame_before_zero_or_are_not_a_plain_video_delay_stay_a_pto() {
        let offsets = [512, 1024];
        // larger than the first offset: the first frame would be presented before 0
        assert_eq!(
            folded_edit(TrackKind::Video, EditList::Stripped, 1024, &offsets),
            0
        );
        // audio priming, a kept (complex) edit list, no edit, no samples
        assert_eq!(
            folded_edit(TrackKind::Audio, EditList::Stripped, 512, &offsets),
            0
        );
        assert_eq!(
            folded_edit(TrackKind::Video, EditList::Kept, 512, &offsets),
            0
        );
        assert_eq!(
            folded_edit(TrackKind::Video, EditList::None, 0, &offsets),
            0
        );
        assert_eq!(
            folded_edit(TrackKind::Video, EditList::Stripped, 512, &[]),
            0
        );
    }
}
