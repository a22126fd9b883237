//! The segment planner, a line-by-line port of the page's `web/src/lib/planner.ts`
//! (same rules, same tie-breaks, same float comparisons), pinned to it by the
//! shared vectors in `testdata/planner/` that both test suites run.
//!
//! Rules (see planner.ts for the long form): every slot starts on a lead-track
//! (video) sync sample nearest `slotStart + targetDuration`, the end of stream
//! counting as a candidate; a byte cap walks back to the latest sync sample that
//! fits; other tracks are cut at the sample nearest the lead cut on the
//! presentation timeline; every track has a sample in every slot; an open GOP at
//! the start is skipped.

use serde::{Deserialize, Serialize};

use crate::fragment::fragment_size;

/// The CLI's default target slot duration (seconds). Pinned to the page's
/// `DEFAULT_PLAN_OPTIONS` by `testdata/planner/defaults.json`: if one side changes,
/// that vector fails on the other.
pub const DEFAULT_TARGET_DURATION: f64 = 4.0;
/// Default cap on the bytes of one slot, all tracks together.
pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;

/// Without `--segment-secs`, a part aims at about this many bytes (all tracks): a seek
/// waits for one part over the uploader's link, ~1 s at 8 Mbit/s; longer parts where the
/// bitrate is low cost fewer requests for the same wait. The page's `PART_TARGET_BYTES`.
pub const PART_TARGET_BYTES: f64 = 1_000_000.0;
/// The bounds of the automatic part duration, seconds (the page's `AUTO_DURATION_*`).
pub const AUTO_DURATION_MIN: f64 = 2.0;
pub const AUTO_DURATION_MAX: f64 = 8.0;

/// The default part duration for these tracks: [`PART_TARGET_BYTES`] at the file's average
/// bitrate, whole seconds in [`AUTO_DURATION_MIN`, `AUTO_DURATION_MAX`]. The page's
/// `autoTargetDuration`, operation for operation (sums in f64, then one multiplication, one
/// division and a floor), so both clients choose the same; the shared vectors pin it.
pub fn auto_target_duration(tracks: &[PlanTrackInput]) -> f64 {
    let mut bytes = 0.0_f64;
    let mut seconds = 0.0_f64;
    for t in tracks {
        let mut ticks = 0.0_f64;
        for (size, duration) in t.samples.size.iter().zip(&t.samples.duration) {
            bytes += f64::from(*size);
            ticks += f64::from(*duration);
        }
        if t.timescale > 0 {
            seconds = seconds.max(ticks / f64::from(t.timescale));
        }
    }
    if !(bytes > 0.0 && seconds > 0.0) {
        return DEFAULT_TARGET_DURATION;
    }
    ((PART_TARGET_BYTES * seconds) / bytes)
        .floor()
        .clamp(AUTO_DURATION_MIN, AUTO_DURATION_MAX)
}

/// What a user who sets nothing gets: the automatic part duration, the default byte cap.
pub fn default_options_for(tracks: &[PlanTrackInput]) -> PlanOptions {
    PlanOptions {
        target_duration: auto_target_duration(tracks),
        ..PlanOptions::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Video,
    Audio,
}

/// One track's samples in decode order; `dts[i+1] == dts[i] + duration[i]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleTable {
    pub dts: Vec<u64>,
    pub duration: Vec<u32>,
    pub size: Vec<u32>,
    /// written 0/1 in JSON (the shared vectors), as the page's `Uint8Array`
    #[serde(with = "sync_as_bits")]
    pub sync: Vec<bool>,
}

mod sync_as_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[bool], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|&b| u8::from(b)))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<bool>, D::Error> {
        Ok(Vec::<u8>::deserialize(d)?
            .into_iter()
            .map(|b| b != 0)
            .collect())
    }
}

impl SampleTable {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            dts: Vec::with_capacity(n),
            duration: Vec::with_capacity(n),
            size: Vec::with_capacity(n),
            sync: Vec::with_capacity(n),
        }
    }
    pub fn count(&self) -> usize {
        self.dts.len()
    }
    /// decode time just past the last sample
    pub fn end(&self) -> u64 {
        match (self.dts.last(), self.duration.last()) {
            (Some(&d), Some(&l)) => d + u64::from(l),
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTrackInput {
    pub id: u32,
    pub kind: TrackKind,
    pub timescale: u32,
    /// presentation time offset in the track timescale (media time of presentation 0)
    pub pto: u64,
    pub samples: SampleTable,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanOptions {
    /// target slot duration in seconds
    pub target_duration: f64,
    /// cap on the bytes of one slot, all tracks together
    pub max_segment_bytes: u64,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            target_duration: DEFAULT_TARGET_DURATION,
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackSegment {
    /// first sample index (inclusive)
    pub first: usize,
    /// last sample index (inclusive)
    pub last: usize,
    /// tfdt baseMediaDecodeTime, track timescale
    pub start: u64,
    /// sum of the sample durations, track timescale
    pub duration: u64,
    /// exact byte size of the media segment file (moof + mdat)
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSlot {
    pub tracks: Vec<TrackSegment>,
    pub start_time: f64,
    pub duration_time: f64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub options: PlanOptions,
    pub lead_track: u32,
    pub skipped: Vec<usize>,
    pub slots: Vec<PlanSlot>,
    pub oversized_slots: Vec<usize>,
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Invalid(String),
}

struct TrackIndex<'a> {
    track: &'a PlanTrackInput,
    cum_bytes: Vec<u64>,
    end: u64,
}

impl<'a> TrackIndex<'a> {
    fn new(track: &'a PlanTrackInput) -> Self {
        let s = &track.samples;
        let mut cum_bytes = Vec::with_capacity(s.count() + 1);
        cum_bytes.push(0);
        let mut acc = 0u64;
        for &b in &s.size {
            acc += u64::from(b);
            cum_bytes.push(acc);
        }
        Self {
            track,
            cum_bytes,
            end: s.end(),
        }
    }
    fn count(&self) -> usize {
        self.track.samples.count()
    }
    /// presentation time (seconds) of sample i; i == count means end of track
    fn time(&self, i: usize) -> f64 {
        let s = &self.track.samples;
        let media = if i >= s.count() { self.end } else { s.dts[i] };
        (media as f64 - self.track.pto as f64) / f64::from(self.track.timescale)
    }
    fn bytes(&self, from: usize, to: usize) -> u64 {
        self.cum_bytes[to] - self.cum_bytes[from]
    }
    /// index in [0, count] of the sample boundary nearest to t (ties: earlier)
    fn nearest(&self, t: f64) -> usize {
        let n = self.count();
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.time(mid) < t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if lo > n {
            return n;
        }
        if lo > 0 && t - self.time(lo - 1) <= self.time(lo) - t {
            return lo - 1;
        }
        lo
    }
}

pub fn plan_segments(tracks: &[PlanTrackInput], opts: PlanOptions) -> Result<Plan, PlanError> {
    if opts.target_duration.is_nan() || opts.target_duration <= 0.0 {
        return Err(PlanError::Invalid("targetDuration must be > 0".into()));
    }
    if opts.max_segment_bytes == 0 {
        return Err(PlanError::Invalid("maxSegmentBytes must be > 0".into()));
    }
    if tracks.is_empty() {
        return Err(PlanError::Invalid("no tracks to plan".into()));
    }
    for t in tracks {
        if t.samples.count() == 0 {
            return Err(PlanError::Invalid(format!("track {} has no samples", t.id)));
        }
        if t.timescale == 0 {
            return Err(PlanError::Invalid(format!(
                "track {} has no timescale",
                t.id
            )));
        }
        let s = &t.samples;
        if s.duration.len() != s.count() || s.size.len() != s.count() || s.sync.len() != s.count() {
            return Err(PlanError::Invalid(format!(
                "track {}: sample table arrays differ in length",
                t.id
            )));
        }
    }
    let lead_pos = tracks
        .iter()
        .position(|t| t.kind == TrackKind::Video)
        .unwrap_or(0);
    let idx: Vec<TrackIndex> = tracks.iter().map(TrackIndex::new).collect();
    let lead = &idx[lead_pos];
    let lead_samples = &lead.track.samples;
    let lead_count = lead_samples.count();

    let sync_list: Vec<usize> = (1..lead_count).filter(|&i| lead_samples.sync[i]).collect();

    let mut first_sync = 0usize;
    while first_sync < lead_count && !lead_samples.sync[first_sync] {
        first_sync += 1;
    }
    if first_sync >= lead_count {
        first_sync = 0;
    }
    let others: Vec<usize> = (0..tracks.len()).filter(|&i| i != lead_pos).collect();
    let mut boundaries: Vec<Vec<usize>> = (0..tracks.len())
        .map(|t| {
            if t == lead_pos || first_sync == 0 {
                vec![0]
            } else {
                vec![idx[t]
                    .nearest(lead.time(first_sync))
                    .min(tracks[t].samples.count() - 1)]
            }
        })
        .collect();
    boundaries[lead_pos] = vec![first_sync];

    enum Cuts {
        Empty,
        Exhausted,
        Ok(Vec<(usize, usize)>),
    }
    let other_cuts = |boundaries: &Vec<Vec<usize>>, c: usize| -> Cuts {
        let tc = lead.time(c);
        let mut cuts = Vec::new();
        for &o in &others {
            let j = idx[o].nearest(tc);
            let prev = *boundaries[o].last().unwrap_or(&0);
            if j >= idx[o].count() {
                return Cuts::Exhausted;
            }
            if j <= prev {
                return Cuts::Empty;
            }
            cuts.push((o, j));
        }
        Cuts::Ok(cuts)
    };
    let slot_bytes = |cur: usize, c: usize| -> u64 {
        let mut b = lead.bytes(cur, c);
        let t0 = lead.time(cur);
        let t1 = lead.time(c);
        for &o in &others {
            let a = idx[o].nearest(t0);
            let z = idx[o].nearest(t1);
            b += idx[o].bytes(a, z.max(a));
        }
        b
    };

    let mut cur = first_sync;
    let mut k0 = 0usize;
    loop {
        while k0 < sync_list.len() && sync_list[k0] <= cur {
            k0 += 1;
        }
        if k0 >= sync_list.len() {
            break;
        }
        let target = lead.time(cur) + opts.target_duration;
        let (mut lo, mut hi) = (k0, sync_list.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if lead.time(sync_list[mid]) < target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let after_time = if lo < sync_list.len() {
            lead.time(sync_list[lo])
        } else {
            lead.time(lead_count)
        };
        let mut choice = if lo > k0 && target - lead.time(sync_list[lo - 1]) <= after_time - target
        {
            lo - 1
        } else {
            lo
        };
        let cut_sample = |k: usize| {
            if k >= sync_list.len() {
                lead_count
            } else {
                sync_list[k]
            }
        };
        if slot_bytes(cur, cut_sample(choice)) > opts.max_segment_bytes {
            let (mut a, mut b) = (k0, choice.min(sync_list.len()));
            let mut best: Option<usize> = None;
            while a < b {
                let mid = (a + b) / 2;
                if slot_bytes(cur, cut_sample(mid)) <= opts.max_segment_bytes {
                    best = Some(mid);
                    a = mid + 1;
                } else {
                    b = mid;
                }
            }
            choice = best.unwrap_or(k0);
        }
        if choice >= sync_list.len() {
            break;
        }
        let mut accepted: Option<Vec<(usize, usize)>> = None;
        let mut k = choice;
        let mut stop = false;
        while k < sync_list.len() {
            match other_cuts(&boundaries, sync_list[k]) {
                Cuts::Empty => {
                    k += 1;
                    continue;
                }
                Cuts::Exhausted => {
                    stop = true;
                    break;
                }
                Cuts::Ok(c) => {
                    accepted = Some(c);
                    break;
                }
            }
        }
        let Some(cuts) = accepted.filter(|_| !stop) else {
            break;
        };
        let c = sync_list[k];
        boundaries[lead_pos].push(c);
        for (o, j) in cuts {
            boundaries[o].push(j);
        }
        cur = c;
    }

    let slot_count = boundaries[lead_pos].len();
    let mut slots = Vec::with_capacity(slot_count);
    let mut oversized_slots = Vec::new();
    let mut total_bytes = 0u64;
    for s in 0..slot_count {
        let mut segs = Vec::with_capacity(tracks.len());
        let mut bytes = 0u64;
        for (t, track) in tracks.iter().enumerate() {
            let tab = &track.samples;
            let first = boundaries[t][s];
            let next = if s + 1 < slot_count {
                boundaries[t][s + 1]
            } else {
                tab.count()
            };
            let last = next - 1;
            let duration: u64 = tab.duration[first..next]
                .iter()
                .map(|&d| u64::from(d))
                .sum();
            let start = tab.dts[first];
            let payload = idx[t].bytes(first, next);
            let size = fragment_size((next - first) as u64, payload, start);
            bytes += size;
            segs.push(TrackSegment {
                first,
                last,
                start,
                duration,
                size,
            });
        }
        let lead_seg = segs[lead_pos];
        let start_time = lead.time(lead_seg.first);
        let end_time = lead.time(lead_seg.last + 1);
        if bytes > opts.max_segment_bytes {
            oversized_slots.push(s);
        }
        total_bytes += bytes;
        slots.push(PlanSlot {
            tracks: segs,
            start_time,
            duration_time: end_time - start_time,
            bytes,
        });
    }
    let skipped = boundaries.iter().map(|b| b[0]).collect();
    Ok(Plan {
        options: opts,
        lead_track: lead.track.id,
        skipped,
        slots,
        oversized_slots,
        total_bytes,
    })
}

/// Consistency checks (as the page's `validatePlan`): returns the problems found.
pub fn validate_plan(tracks: &[PlanTrackInput], plan: &Plan) -> Vec<String> {
    let mut problems = Vec::new();
    for (t, track) in tracks.iter().enumerate() {
        let mut expect_next = plan.skipped.get(t).copied().unwrap_or(0);
        let mut expect_start: Option<u64> = None;
        for (s, slot) in plan.slots.iter().enumerate() {
            let Some(seg) = slot.tracks.get(t) else {
                problems.push(format!("slot {s} lacks track {}", track.id));
                continue;
            };
            if seg.first != expect_next {
                problems.push(format!(
                    "track {} slot {s} starts at sample {}, expected {expect_next}",
                    track.id, seg.first
                ));
            }
            if seg.last < seg.first {
                problems.push(format!("track {} slot {s} is empty", track.id));
            }
            if expect_start.is_some_and(|e| e != seg.start) {
                problems.push(format!("track {} slot {s} timeline gap", track.id));
            }
            if track.kind == TrackKind::Video
                && !track.samples.sync.get(seg.first).copied().unwrap_or(false)
            {
                problems.push(format!(
                    "track {} slot {s} starts on a non-sync sample",
                    track.id
                ));
            }
            expect_next = seg.last + 1;
            expect_start = Some(seg.start + seg.duration);
        }
        if expect_next != track.samples.count() {
            problems.push(format!(
                "track {}: plan covers {expect_next} of {} samples",
                track.id,
                track.samples.count()
            ));
        }
    }
    problems
}
