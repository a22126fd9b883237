//! Shared helpers for the fmp4 / segment_check tests: a tiny ISO-BMFF box
//! writer, a media segment builder, the ffmpeg fixtures and a xorshift PRNG.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;

/// Sample flags of a sync sample (sample_depends_on = 2, non-sync bit clear).
pub const SYNC: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample (depends_on = 1, non-sync bit set).
pub const NON_SYNC: u32 = 0x0101_0000;

pub fn u32be(v: u32) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn u64be(v: u64) -> Vec<u8> {
    v.to_be_bytes().to_vec()
}

pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A box with a 32-bit size.
pub fn bx(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let size = u32::try_from(8 + payload.len()).unwrap();
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(payload);
    out
}

/// A box with size == 1 and a 64-bit largesize.
pub fn bx64(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = 1u32.to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out.extend_from_slice(&(16 + payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A raw header with an arbitrary declared size (for hostile inputs).
pub fn raw_header(size: u32, kind: &[u8; 4]) -> Vec<u8> {
    let mut out = size.to_be_bytes().to_vec();
    out.extend_from_slice(kind);
    out
}

/// A full box: version + 24-bit flags, then payload.
pub fn full(kind: &[u8; 4], version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
    let vf = (u32::from(version) << 24) | (flags & 0x00ff_ffff);
    bx(kind, &cat(&[&vf.to_be_bytes(), payload]))
}

pub fn styp() -> Vec<u8> {
    bx(b"styp", b"msdh\0\0\0\0msdhmsix")
}

pub fn sidx(timescale: u32) -> Vec<u8> {
    // version 0, one reference; the numbers are not checked by the parser.
    let payload = cat(&[
        &u32be(1),
        &u32be(timescale),
        &u32be(0),
        &u32be(0),
        &[0, 0, 0, 1],
        &u32be(1000),
        &u32be(timescale),
        &u32be(0x9000_0000),
    ]);
    full(b"sidx", 0, 0, &payload)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub duration: u32,
    pub size: u32,
    pub flags: u32,
}

pub fn samples(n: usize, duration: u32, size: u32) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample {
            duration,
            size,
            flags: if i == 0 { SYNC } else { NON_SYNC },
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Like mp4box.js: tfhd default-base-is-moof only; trun v1 carries
    /// per-sample duration, size, flags and composition offset.
    PerSample,
    /// Like ffmpeg: tfhd default duration/size/flags; trun carries
    /// first-sample-flags and per-sample sizes (and durations if they vary).
    Defaults,
    /// No sample flags anywhere (they would come from trex).
    NoFlags,
}

#[derive(Debug, Clone)]
pub struct TrafSpec {
    pub track_id: u32,
    pub tfdt: Option<u64>,
    pub tfdt_version: u8,
    pub samples: Vec<Sample>,
    pub style: Style,
    /// Extra boxes appended inside the traf (unknown children etc.).
    pub extra: Vec<u8>,
}

impl TrafSpec {
    pub fn new(track_id: u32, tfdt: u64, samples: Vec<Sample>) -> Self {
        TrafSpec {
            track_id,
            tfdt: Some(tfdt),
            tfdt_version: 1,
            samples,
            style: Style::PerSample,
            extra: Vec::new(),
        }
    }

    fn data_len(&self) -> u64 {
        self.samples.iter().map(|s| u64::from(s.size)).sum()
    }

    fn build(&self, data_offset: i32) -> Vec<u8> {
        let n = u32::try_from(self.samples.len()).unwrap();
        let first = self.samples.first().copied().unwrap_or(Sample {
            duration: 0,
            size: 0,
            flags: SYNC,
        });
        let (tfhd, trun) = match self.style {
            Style::PerSample => {
                let tfhd = full(b"tfhd", 0, 0x02_0000, &u32be(self.track_id));
                let mut body = cat(&[&u32be(n), &data_offset.to_be_bytes()]);
                for (i, s) in self.samples.iter().enumerate() {
                    body.extend(u32be(s.duration));
                    body.extend(u32be(s.size));
                    body.extend(u32be(s.flags));
                    body.extend((if i % 2 == 0 { 0i32 } else { -512 }).to_be_bytes());
                }
                (tfhd, full(b"trun", 1, 0x0f01, &body))
            }
            Style::Defaults | Style::NoFlags => {
                let uniform = self.samples.iter().all(|s| s.duration == first.duration);
                let with_flags = self.style == Style::Defaults;
                let tfhd_flags = if with_flags { 0x02_0038 } else { 0x02_0018 };
                let mut tfhd_body = cat(&[
                    &u32be(self.track_id),
                    &u32be(first.duration),
                    &u32be(first.size),
                ]);
                if with_flags {
                    tfhd_body.extend(u32be(NON_SYNC));
                }
                let tfhd = full(b"tfhd", 0, tfhd_flags, &tfhd_body);
                let mut trun_flags = 0x0201; // data offset + per-sample size
                let mut body = cat(&[&u32be(n), &data_offset.to_be_bytes()]);
                if with_flags {
                    trun_flags |= 0x0004;
                    body.extend(u32be(first.flags));
                }
                if !uniform {
                    trun_flags |= 0x0100;
                }
                for s in &self.samples {
                    if !uniform {
                        body.extend(u32be(s.duration));
                    }
                    body.extend(u32be(s.size));
                }
                (tfhd, full(b"trun", 0, trun_flags, &body))
            }
        };
        let tfdt = match (self.tfdt, self.tfdt_version) {
            (None, _) => Vec::new(),
            (Some(t), 0) => full(b"tfdt", 0, 0, &u32be(u32::try_from(t).unwrap())),
            (Some(t), _) => full(b"tfdt", 1, 0, &u64be(t)),
        };
        bx(b"traf", &cat(&[&tfhd, &tfdt, &trun, &self.extra]))
    }
}

/// A standalone media segment: `[styp] [sidx] moof mdat [trailer]`.
#[derive(Debug, Clone)]
pub struct Segment {
    pub sequence: u32,
    pub styp: bool,
    pub sidx: bool,
    pub trafs: Vec<TrafSpec>,
    /// Extra boxes inside the moof after the trafs.
    pub moof_extra: Vec<u8>,
    /// Use a 64-bit largesize mdat header.
    pub mdat_largesize: bool,
}

impl Segment {
    pub fn single(traf: TrafSpec) -> Self {
        Segment {
            sequence: 1,
            styp: true,
            sidx: true,
            trafs: vec![traf],
            moof_extra: Vec::new(),
            mdat_largesize: false,
        }
    }

    pub fn moof(&self) -> Vec<u8> {
        // data offsets are relative to the moof start (default-base-is-moof)
        let draft = self.moof_with_offsets(&vec![0; self.trafs.len()]);
        let mdat_header = if self.mdat_largesize { 16 } else { 8 };
        let mut offsets = Vec::new();
        let mut at = (draft.len() + mdat_header) as u64;
        for t in &self.trafs {
            offsets.push(i32::try_from(at).unwrap());
            at += t.data_len();
        }
        self.moof_with_offsets(&offsets)
    }

    fn moof_with_offsets(&self, offsets: &[i32]) -> Vec<u8> {
        let mut body = full(b"mfhd", 0, 0, &u32be(self.sequence));
        for (t, &o) in self.trafs.iter().zip(offsets) {
            body.extend(t.build(o));
        }
        body.extend(&self.moof_extra);
        bx(b"moof", &body)
    }

    pub fn mdat(&self) -> Vec<u8> {
        let len: u64 = self.trafs.iter().map(TrafSpec::data_len).sum();
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        if self.mdat_largesize {
            bx64(b"mdat", &payload)
        } else {
            bx(b"mdat", &payload)
        }
    }

    pub fn prefix(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if self.styp {
            out.extend(styp());
        }
        if self.sidx {
            out.extend(sidx(12800));
        }
        out
    }

    pub fn build(&self) -> Vec<u8> {
        cat(&[&self.prefix(), &self.moof(), &self.mdat()])
    }
}

/// A typical valid video segment: track 1, tfdt 25600, 50 samples of 512.
pub fn video_segment() -> Vec<u8> {
    Segment::single(TrafSpec::new(1, 25_600, samples(50, 512, 40))).build()
}

/// A minimal init segment builder: one `trak` per (track_id, handler, timescale).
pub fn init_segment(tracks: &[(u32, &[u8; 4], u32)], with_mvex: bool) -> Vec<u8> {
    let mut moov = full(b"mvhd", 0, 0, &[0u8; 96]);
    let mut mvex = Vec::new();
    for &(id, handler, timescale) in tracks {
        let tkhd = full(
            b"tkhd",
            0,
            3,
            &cat(&[&u32be(0), &u32be(0), &u32be(id), &[0u8; 68]]),
        );
        let mdhd = full(
            b"mdhd",
            0,
            0,
            &cat(&[
                &u32be(0),
                &u32be(0),
                &u32be(timescale),
                &u32be(0),
                &[0x55, 0xc4, 0, 0],
            ]),
        );
        let hdlr = full(
            b"hdlr",
            0,
            0,
            &cat(&[&u32be(0), handler, &[0u8; 12], b"Handler\0"]),
        );
        let stbl = bx(
            b"stbl",
            &cat(&[
                &full(b"stsd", 0, 0, &u32be(0)),
                &full(b"stts", 0, 0, &u32be(0)),
            ]),
        );
        let minf = bx(b"minf", &stbl);
        let mdia = bx(b"mdia", &cat(&[&mdhd, &hdlr, &minf]));
        moov.extend(bx(b"trak", &cat(&[&tkhd, &mdia])));
        mvex.extend(full(
            b"trex",
            0,
            0,
            &cat(&[&u32be(id), &u32be(1), &u32be(0), &u32be(0), &u32be(0)]),
        ));
    }
    if with_mvex {
        moov.extend(bx(b"mvex", &mvex));
    }
    cat(&[&bx(b"ftyp", b"iso6\0\0\x02\0iso6mp41"), &bx(b"moov", &moov)])
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", name]
        .iter()
        .collect();
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Deterministic xorshift64* PRNG (no rand dependency).
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}
