//! One init segment per track (demuxed), as the page writes them: `ftyp`
//! (iso6, dash brands) + `moov` { mvhd, trak { tkhd, [edts kept], mdia { mdhd,
//! hdlr, minf { vmhd|smhd, dinf, stbl { stsd (copied), empty stts/stsc/stsz/stco } } } },
//! mvex { trex } }, durations zeroed (the manifest carries them). The sample
//! description is copied as is, except that an mp4a entry whose esds sits in
//! QuickTime's `wave` box gets it hoisted, as mp4box does for MSE.

use crate::boxes::{be_u16, children, RawBox};
use crate::codec::find_esds;

pub struct InitParts<'a> {
    pub buf: &'a [u8],
    pub mvhd: &'a RawBox,
    pub tkhd: &'a RawBox,
    pub edts: Option<&'a RawBox>,
    pub mdhd: &'a RawBox,
    pub handler: &'a [u8; 4],
    pub media_header: Option<&'a RawBox>,
    pub stsd: &'a RawBox,
    pub track_id: u32,
    pub is_video: bool,
}

fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 8);
    v.extend_from_slice(&((payload.len() + 8) as u32).to_be_bytes());
    v.extend_from_slice(kind);
    v.extend_from_slice(payload);
    v
}

/// A full box's payload with its duration field (u32 in v0, u64 in v1) zeroed.
fn zero_duration(buf: &[u8], b: &RawBox, v0_at: usize, v1_at: usize) -> Vec<u8> {
    let mut p = b.payload(buf).to_vec();
    let (at, len) = if p.first() == Some(&1) {
        (v1_at, 8)
    } else {
        (v0_at, 4)
    };
    if let Some(field) = p.get_mut(at..at + len) {
        field.fill(0);
    }
    p
}

fn sample_description(buf: &[u8], stsd: &RawBox, is_video: bool) -> Vec<u8> {
    let payload = stsd.payload(buf);
    if is_video {
        return boxed(b"stsd", payload);
    }
    let entries = children(buf, stsd.body + 8, stsd.end).unwrap_or_default();
    let mut out = payload.get(..8).unwrap_or(&[0; 8]).to_vec();
    for e in &entries {
        let version = be_u16(buf, e.body + 8).unwrap_or(0);
        let extra = match version {
            1 => 16,
            2 => 36,
            _ => 0,
        };
        let fixed_end = e.body + 28 + extra;
        let kids = children(buf, fixed_end.min(e.end), e.end).unwrap_or_default();
        let hoist = &e.kind == b"mp4a"
            && !kids.iter().any(|k| &k.kind == b"esds")
            && find_esds(buf, &kids).is_some();
        if !hoist {
            out.extend_from_slice(e.bytes(buf));
            continue;
        }
        let mut body = buf.get(e.body..fixed_end).unwrap_or(&[]).to_vec();
        for k in kids.iter().filter(|k| &k.kind != b"wave") {
            body.extend_from_slice(k.bytes(buf));
        }
        if let Some(esds) = find_esds(buf, &kids) {
            body.extend_from_slice(esds.bytes(buf));
        }
        out.extend(boxed(&e.kind, &body));
    }
    boxed(b"stsd", &out)
}

pub fn init_segment(p: &InitParts) -> Vec<u8> {
    let buf = p.buf;
    let mut ftyp = b"iso6".to_vec();
    ftyp.extend_from_slice(&[0, 0, 0, 0]);
    for brand in [b"iso6", b"isom", b"mp41", b"dash"] {
        ftyp.extend_from_slice(brand);
    }
    let mut stbl = sample_description(buf, p.stsd, p.is_video);
    stbl.extend(boxed(b"stts", &[0; 8]));
    stbl.extend(boxed(b"stsc", &[0; 8]));
    stbl.extend(boxed(b"stsz", &[0; 12]));
    stbl.extend(boxed(b"stco", &[0; 8]));
    let mut minf = match p.media_header {
        Some(mh) => mh.bytes(buf).to_vec(),
        None if p.is_video => boxed(b"vmhd", &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
        None => boxed(b"smhd", &[0; 8]),
    };
    let mut url = vec![0, 0, 0, 1];
    url = boxed(b"url ", &url.split_off(0));
    let mut dref = vec![0, 0, 0, 0, 0, 0, 0, 1];
    dref.extend(url);
    minf.extend(boxed(b"dinf", &boxed(b"dref", &dref)));
    minf.extend(boxed(b"stbl", &stbl));
    let mut hdlr = vec![0u8; 8];
    hdlr.extend_from_slice(p.handler);
    hdlr.extend_from_slice(&[0u8; 12]);
    hdlr.extend_from_slice(if p.is_video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    let mut mdia = boxed(b"mdhd", &zero_duration(buf, p.mdhd, 16, 24));
    mdia.extend(boxed(b"hdlr", &hdlr));
    mdia.extend(boxed(b"minf", &minf));
    let mut trak = boxed(b"tkhd", &zero_duration(buf, p.tkhd, 20, 28));
    if let Some(edts) = p.edts {
        trak.extend_from_slice(edts.bytes(buf));
    }
    trak.extend(boxed(b"mdia", &mdia));
    let mut trex = vec![0, 0, 0, 0];
    trex.extend_from_slice(&p.track_id.to_be_bytes());
    trex.extend_from_slice(&1u32.to_be_bytes());
    trex.extend_from_slice(&[0; 8]);
    trex.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    let mut moov = boxed(b"mvhd", &zero_duration(buf, p.mvhd, 16, 24));
    moov.extend(boxed(b"trak", &trak));
    moov.extend(boxed(b"mvex", &boxed(b"trex", &trex)));
    let mut out = boxed(b"ftyp", &ftyp);
    out.extend(boxed(b"moov", &moov));
    out
}
