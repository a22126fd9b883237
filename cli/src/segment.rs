//! Builds a slot's media segments from the source file on demand: the moof from
//! the sample table, then the sample bytes read with a few positioned reads (samples
//! close together share one). Nothing but the segments being sent is held in memory
//! (and one scratch buffer per thread that builds them, `BATCH`).
//!
//! All tracks of a slot are built in one pass over their samples in file order: in an
//! interleaved file the tracks' samples alternate, so one read covers all of them (each
//! byte read once, then copied into its own track's segment), where a pass per track
//! would read the span of the other tracks' samples too.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::fragment::{fragment_head, FragmentSample};
use crate::planner::{Plan, TrackSegment};
use crate::source::{Analysis, SourceTrack};

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("slot {slot} track #{track}: built {built} bytes, planned {planned}")]
    SizeMismatch {
        slot: usize,
        track: usize,
        built: u64,
        planned: u64,
    },
    #[error("slot {0} or track {1} is not in the plan")]
    OutOfPlan(usize, usize),
    #[error("reading the source file: {0} (was it changed or moved during the upload?)")]
    Read(#[from] std::io::Error),
}

/// a read costs about as much as copying this many bytes: bigger gaps get their own read
const MAX_GAP: u64 = 16 * 1024;
/// only runs of contiguous samples smaller than this are worth reading together with
/// others (tiny frames of low-bitrate video, audio, the other track's samples in between):
/// larger ones are read straight into their segment, where the extra copy would cost more
/// than the read
const SMALL_SAMPLE: u64 = 16 * 1024;
/// the most bytes small pieces read together read at once: a slot of a low-bitrate file
/// in one read or a few
const BATCH: usize = 512 * 1024;

thread_local! {
    /// the scratch buffer of `read_samples`, kept by the thread: a fresh one per slot would
    /// be zeroed and page-faulted in again every time (a sizeable part of the work)
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; BATCH]);
}

/// One track's segment of the slot being built.
struct Part<'a> {
    track: usize,
    seg: &'a TrackSegment,
    src: &'a SourceTrack,
}

impl Part<'_> {
    fn offset(&self, i: usize) -> u64 {
        self.src.offsets[i]
    }
    fn size(&self, i: usize) -> u64 {
        u64::from(self.src.input.samples.size[i])
    }
    /// indices of the segment's samples
    fn range(&self) -> std::ops::Range<usize> {
        self.seg.first..self.seg.last + 1
    }
    /// moof + mdat header, with room for the whole segment
    fn head(&self, slot: usize) -> Vec<u8> {
        let s = &self.src.input.samples;
        let samples: Vec<FragmentSample> = self
            .range()
            .map(|i| FragmentSample {
                duration: s.duration[i],
                size: s.size[i],
                sync: s.sync[i],
                cts_offset: self.src.cts_offsets[i],
            })
            .collect();
        let mut out = fragment_head(slot, self.src.input.id, self.seg.start, &samples);
        out.reserve_exact((self.seg.size as usize).saturating_sub(out.len()));
        out
    }
}

/// The exact bytes of the segments of `tracks` (indices into `analysis.tracks`) in slot
/// `slot`, in the order of `tracks`.
pub fn build_slot(
    file: &File,
    analysis: &Analysis,
    plan: &Plan,
    slot: usize,
    tracks: &[usize],
) -> Result<Vec<Vec<u8>>, SegmentError> {
    let parts = tracks
        .iter()
        .map(|&track| {
            let seg = plan
                .slots
                .get(slot)
                .and_then(|s| s.tracks.get(track))
                .ok_or(SegmentError::OutOfPlan(slot, track))?;
            let src = analysis
                .tracks
                .get(track)
                .filter(|src| seg.last < src.offsets.len())
                .ok_or(SegmentError::OutOfPlan(slot, track))?;
            Ok(Part { track, seg, src })
        })
        .collect::<Result<Vec<_>, SegmentError>>()?;
    let mut outs: Vec<Vec<u8>> = parts.iter().map(|p| p.head(slot)).collect();
    read_samples(file, &parts, &mut outs)?;
    for (p, out) in parts.iter().zip(&outs) {
        if out.len() as u64 != p.seg.size {
            return Err(SegmentError::SizeMismatch {
                slot,
                track: p.track,
                built: out.len() as u64,
                planned: p.seg.size,
            });
        }
    }
    Ok(outs)
}

/// Bytes `start..end` of the file: contiguous samples of the part `k`.
#[derive(Clone, Copy)]
struct Piece {
    k: usize,
    start: u64,
    end: u64,
}

/// Appends the sample bytes of every part to its output, walking all their samples in
/// file order (a k-way merge of the tracks, each taken in sample order): contiguous
/// samples of one track form a piece; a large piece is read straight into its segment
/// (with the small pieces of other tracks just after it), small pieces close together
/// share one read into the scratch buffer and are copied out. A track whose samples are
/// not in file order still comes out in sample order (each step backwards in the file
/// is a read of its own).
fn read_samples(file: &File, parts: &[Part], outs: &mut [Vec<u8>]) -> io::Result<()> {
    let mut next: Vec<usize> = parts.iter().map(|p| p.range().start).collect();
    SCRATCH.with_borrow_mut(|buf| {
        let mut reader = Reader {
            file,
            outs,
            lead: None,
            batch: Vec::new(),
            buf: &mut buf[..],
        };
        let mut piece: Option<Piece> = None;
        loop {
            // the sample with the lowest offset among the tracks' next ones
            let mut best: Option<(usize, u64)> = None;
            for (k, p) in parts.iter().enumerate() {
                let i = next[k];
                if i < p.range().end {
                    let o = p.offset(i);
                    if best.is_none_or(|(_, b)| o < b) {
                        best = Some((k, o));
                    }
                }
            }
            let Some((k, start)) = best else { break };
            let i = next[k];
            next[k] += 1;
            let end = start + parts[k].size(i);
            match &mut piece {
                Some(p) if p.k == k && p.end == start => p.end = end,
                _ => {
                    if let Some(p) = piece.take() {
                        reader.piece(p)?;
                    }
                    piece = Some(Piece { k, start, end });
                }
            }
        }
        if let Some(p) = piece {
            reader.piece(p)?;
        }
        reader.flush()
    })
}

struct Reader<'a> {
    file: &'a File,
    outs: &'a mut [Vec<u8>],
    /// a large piece waiting for its read, straight into its segment; `batch` then holds
    /// the small pieces of other tracks just after it, read along with it (one read instead
    /// of one more per small piece: the audio between the frames of high-bitrate video)
    lead: Option<Piece>,
    /// pieces waiting for their shared read, in file order: with no lead, small pieces
    /// read together into the scratch buffer
    batch: Vec<Piece>,
    buf: &'a mut [u8],
}

impl Reader<'_> {
    fn piece(&mut self, p: Piece) -> io::Result<()> {
        if p.end - p.start >= SMALL_SAMPLE {
            self.flush()?;
            self.lead = Some(p);
            return Ok(());
        }
        if let Some(lead) = self.lead {
            let end = self.batch.last().map_or(lead.end, |b| b.end);
            let out = &self.outs[lead.k];
            // read past the lead only into the room its segment has anyway
            let room = (out.capacity() - out.len()) as u64;
            if p.k != lead.k
                && p.start >= end
                && p.start - end <= MAX_GAP
                && p.end - lead.start <= room
            {
                self.batch.push(p);
                return Ok(());
            }
            self.flush()?;
        }
        if let (Some(first), Some(last)) = (self.batch.first(), self.batch.last()) {
            if p.start < last.end
                || p.start - last.end > MAX_GAP
                || p.end - first.start > BATCH as u64
            {
                self.flush()?;
            }
        }
        self.batch.push(p);
        Ok(())
    }

    /// `p` straight into its segment, with the bytes up to `end` after it (returns where
    /// they start in the segment)
    fn direct(&mut self, p: Piece, end: u64) -> io::Result<usize> {
        let out = &mut self.outs[p.k];
        let at = out.len();
        out.resize(at + (end - p.start) as usize, 0);
        self.file.read_exact_at(&mut out[at..], p.start)?;
        Ok(at)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(lead) = self.lead.take() {
            let end = self.batch.last().map_or(lead.end, |b| b.end);
            let at = self.direct(lead, end)?;
            // the small pieces read along go to their own segments
            let mut out = std::mem::take(&mut self.outs[lead.k]);
            for p in &self.batch {
                let from = at + (p.start - lead.start) as usize;
                let len = (p.end - p.start) as usize;
                self.outs[p.k].extend_from_slice(&out[from..from + len]);
            }
            out.truncate(at + (lead.end - lead.start) as usize);
            self.outs[lead.k] = out;
        } else {
            match self.batch[..] {
                [] => {}
                [p] => {
                    self.direct(p, p.end)?;
                }
                [first, .., last] => {
                    let need = (last.end - first.start) as usize;
                    self.file
                        .read_exact_at(&mut self.buf[..need], first.start)?;
                    for p in &self.batch {
                        let at = (p.start - first.start) as usize;
                        let len = (p.end - p.start) as usize;
                        self.outs[p.k].extend_from_slice(&self.buf[at..at + len]);
                    }
                }
            }
        }
        self.batch.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::EntryInfo;
    use crate::fragment::fragment_size;
    use crate::planner::{PlanOptions, PlanSlot, PlanTrackInput, SampleTable, TrackKind};
    use crate::source::EditList;
    use std::path::PathBuf;

    /// a file in the temp dir, removed when dropped
    struct TempFile(PathBuf);
    impl TempFile {
        fn new(name: &str, bytes: &[u8]) -> Self {
            let path = std::env::temp_dir().join(format!(
                "chunkstream-segment-{}-{name}.bin",
                std::process::id()
            ));
            std::fs::write(&path, bytes).expect("temp file");
            Self(path)
        }
        fn open(&self) -> File {
            File::open(&self.0).expect("temp file")
        }
    }
    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    struct Lcg(u64);
    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    fn track(id: u32, kind: TrackKind, samples: &[(u64, u32)]) -> SourceTrack {
        let n = samples.len();
        let mut table = SampleTable::with_capacity(n);
        for (i, &(_, size)) in samples.iter().enumerate() {
            table.dts.push(i as u64 * 512);
            table.duration.push(512);
            table.size.push(size);
            table.sync.push(i % 30 == 0);
        }
        SourceTrack {
            input: PlanTrackInput {
                id,
                kind,
                timescale: 15_360,
                pto: 0,
                samples: table,
            },
            info: EntryInfo::bare("test"),
            edit_list: EditList::None,
            offsets: samples.iter().map(|&(o, _)| o).collect(),
            cts_offsets: (0..n as i32).map(|i| (i % 3 - 1) * 512).collect(),
            composition_shift: 0,
            init_segment: Vec::new(),
            language: None,
            label: None,
            default: kind == TrackKind::Audio,
        }
    }

    /// An interleaved file: video samples big (read straight into their segment, with the
    /// audio after them) and small (read with the others), audio in chunks of 1-3 samples,
    /// gaps small and large, runs of small samples longer than the scratch buffer, and a
    /// third track whose samples are not in file order. Returns the file's bytes, the
    /// analysis and a plan of `SLOTS` slots.
    fn interleaved() -> (Vec<u8>, Analysis, Plan) {
        const SLOTS: usize = 4;
        let mut rng = Lcg(7);
        let mut data = Vec::new();
        let mut tracks: [Vec<(u64, u32)>; 3] = Default::default();
        // a sample of `min + [0, spread)` random bytes at the end of the file
        let sample = |data: &mut Vec<u8>, rng: &mut Lcg, min: u64, spread: u64| {
            let size = min + rng.below(spread);
            let at = data.len() as u64;
            data.extend((0..size).map(|_| rng.below(256) as u8));
            (at, size as u32)
        };
        let mut low_bitrate = 0u32;
        while data.len() < 6 << 20 {
            // stretches of low-bitrate video (all samples small) between high-bitrate ones
            if low_bitrate == 0 && rng.below(40) == 0 {
                low_bitrate = 1000; // ~1 MB, more than the scratch buffer holds
            }
            let big = low_bitrate == 0 && rng.below(3) > 0;
            low_bitrate = low_bitrate.saturating_sub(1);
            let s = if big {
                sample(&mut data, &mut rng, 16 * 1024, 60_000)
            } else {
                sample(&mut data, &mut rng, 1, 3000)
            };
            tracks[0].push(s);
            for _ in 0..rng.below(4) {
                let s = sample(&mut data, &mut rng, 1, 500);
                tracks[1].push(s);
            }
            if rng.below(5) == 0 {
                let s = sample(&mut data, &mut rng, 1, 800);
                tracks[2].push(s);
            }
            // gaps: small ones (read past), and large ones (not) but in low-bitrate stretches
            match rng.below(10) {
                0 => data.resize(data.len() + 1 + rng.below(200) as usize, 0xee),
                1 if low_bitrate == 0 => {
                    data.resize(data.len() + 17_000 + rng.below(9000) as usize, 0xee)
                }
                _ => {}
            }
        }
        // the third track's samples out of file order (pairs swapped)
        for pair in tracks[2].chunks_mut(2) {
            pair.reverse();
        }
        let tracks = vec![
            track(1, TrackKind::Video, &tracks[0]),
            track(2, TrackKind::Audio, &tracks[1]),
            track(3, TrackKind::Audio, &tracks[2]),
        ];
        let mut slots: Vec<PlanSlot> = (0..SLOTS)
            .map(|_| PlanSlot {
                tracks: Vec::new(),
                start_time: 0.0,
                duration_time: 0.0,
                bytes: 0,
            })
            .collect();
        for t in &tracks {
            let (n, s) = (t.offsets.len(), &t.input.samples);
            for (k, slot) in slots.iter_mut().enumerate() {
                let (first, next) = (k * n / SLOTS, (k + 1) * n / SLOTS);
                let payload: u64 = s.size[first..next].iter().map(|&z| u64::from(z)).sum();
                let start = s.dts[first];
                let size = fragment_size((next - first) as u64, payload, start);
                slot.tracks.push(TrackSegment {
                    first,
                    last: next - 1,
                    start,
                    duration: 512 * (next - first) as u64,
                    size,
                });
                slot.bytes += size;
            }
        }
        let analysis = Analysis {
            file_size: data.len() as u64,
            duration: 0.0,
            tracks,
            ignored: Vec::new(),
            moov_bytes: 0,
        };
        let plan = Plan {
            options: PlanOptions::default(),
            lead_track: 1,
            skipped: Vec::new(),
            total_bytes: slots.iter().map(|s| s.bytes).sum(),
            slots,
            oversized_slots: Vec::new(),
        };
        (data, analysis, plan)
    }

    /// the segment written sample by sample from the file's bytes
    fn expected(data: &[u8], analysis: &Analysis, plan: &Plan, slot: usize, t: usize) -> Vec<u8> {
        let seg = &plan.slots[slot].tracks[t];
        let src = &analysis.tracks[t];
        let s = &src.input.samples;
        let samples: Vec<FragmentSample> = (seg.first..=seg.last)
            .map(|i| FragmentSample {
                duration: s.duration[i],
                size: s.size[i],
                sync: s.sync[i],
                cts_offset: src.cts_offsets[i],
            })
            .collect();
        let mut out = fragment_head(slot, src.input.id, seg.start, &samples);
        for i in seg.first..=seg.last {
            let at = src.offsets[i] as usize;
            out.extend_from_slice(&data[at..at + s.size[i] as usize]);
        }
        assert_eq!(out.len() as u64, seg.size);
        out
    }

    #[test]
    fn a_slot_built_in_one_pass_has_each_tracks_exact_bytes() {
        let (data, analysis, plan) = interleaved();
        // the third track steps back in the file in every slot
        for slot in &plan.slots {
            let (seg, src) = (&slot.tracks[2], &analysis.tracks[2]);
            assert!((seg.first..seg.last).any(|i| src.offsets[i + 1] < src.offsets[i]));
        }
        // small samples only, for longer than one read of them
        let longest_small: u64 = analysis.tracks[0]
            .input
            .samples
            .size
            .split(|&z| u64::from(z) >= SMALL_SAMPLE)
            .map(|run| run.iter().map(|&z| u64::from(z)).sum())
            .max()
            .unwrap_or(0);
        assert!(longest_small > 2 * BATCH as u64, "{longest_small}");
        let tmp = TempFile::new("interleaved", &data);
        let file = tmp.open();
        for slot in 0..plan.slots.len() {
            let want: Vec<Vec<u8>> = (0..3)
                .map(|t| expected(&data, &analysis, &plan, slot, t))
                .collect();
            for tracks in [&[0, 1, 2][..], &[2, 1, 0], &[1, 0], &[0], &[1], &[2], &[]] {
                let built = build_slot(&file, &analysis, &plan, slot, tracks).expect("built");
                assert_eq!(built.len(), tracks.len());
                for (body, &t) in built.iter().zip(tracks) {
                    assert!(*body == want[t], "slot {slot} track {t} of {tracks:?}");
                }
            }
        }
    }

    #[test]
    fn a_changed_file_is_an_error() {
        let (data, analysis, plan) = interleaved();
        let tmp = TempFile::new("changed", &data);
        let file = tmp.open();
        // re-analyzed after a change: a sample bigger than planned
        let mut changed = analysis.clone();
        let i = plan.slots[2].tracks[1].first + 1;
        changed.tracks[1].input.samples.size[i] += 1;
        let err = build_slot(&file, &changed, &plan, 2, &[0, 1, 2]).expect_err("mismatch");
        assert!(
            matches!(err, SegmentError::SizeMismatch { slot: 2, track: 1, built, planned } if built == planned + 1),
            "{err}"
        );
        // the same for the track whose samples are not in file order
        let mut changed = analysis.clone();
        let i = plan.slots[2].tracks[2].first;
        changed.tracks[2].input.samples.size[i] -= 1;
        let err = build_slot(&file, &changed, &plan, 2, &[0, 1, 2]).expect_err("mismatch");
        assert!(
            matches!(
                err,
                SegmentError::SizeMismatch {
                    slot: 2,
                    track: 2,
                    ..
                }
            ),
            "{err}"
        );
        // truncated since the analysis
        let cut = TempFile::new("truncated", &data[..data.len() / 2]);
        let last = plan.slots.len() - 1;
        let err = build_slot(&cut.open(), &analysis, &plan, last, &[0, 1, 2]).expect_err("short");
        assert!(matches!(err, SegmentError::Read(_)), "{err}");
        // not in the plan
        assert!(matches!(
            build_slot(&file, &analysis, &plan, plan.slots.len(), &[0]),
            Err(SegmentError::OutOfPlan(..))
        ));
        assert!(matches!(
            build_slot(&file, &analysis, &plan, 0, &[0, 3]),
            Err(SegmentError::OutOfPlan(0, 3))
        ));
    }
}
