//! The compact stored form of a video's per-slot records, so their size follows
//! how many slots are in flight or out of order, not how many the video has.
//!
//! `state.json`'s `slots` is stored as runs of equal states:
//!
//! ```text
//! {"count": 20000, "runs": [[6000, "P", 1733000007000], [4, "u", 1733000004000], [4, "a", 1733000121000], [9992, "p"]]}
//! ```
//!
//! Each run is `[length, letter]` or `[length, letter, detail]`, with the status
//! answer's letters: `p` pending, `a` assigned (detail: lease expiry, ms),
//! `u` uploaded (detail: reported at, ms), `P` published (detail: the latest
//! publication time of the run, ms), `f` failed (detail: the reason).
//! Neighbouring published slots always share one run: nothing reads a
//! published slot's own time (`published.json` is what says a slot is public),
//! so the run keeps only the latest, and a published slot decodes as
//! "published by then". Everything else a reader needs (a lease's expiry for
//! the scheduler, an upload's time for the repeat guard and the reaper's
//! re-drive, a failure's reason for the status answer) is kept exactly.
//!
//! `published.json`'s `published` is stored as the published ranges:
//! `{"count": 20000, "ranges": [[0, 6000], [10000, 10006]]}` (`[start, end)`).
//!
//! Both fields also read their earlier form (an array of one `{"state":…}`
//! object per slot; a string of one `0`/`1` per slot), so sessions stored
//! before this encoding keep working; they are written in the new form the
//! next time they change. Decoding never allocates more than the declared
//! slot count, which must not exceed [`MAX_PLAN_SLOTS`] and must match the runs.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::plan::MAX_PLAN_SLOTS;
use crate::state::SlotState;

/// Why a stored slot record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotRunsError {
    #[error("{count} slots declared; no plan has more than {max}")]
    TooManySlots { count: usize, max: usize },
    #[error("more than {max} entries in a list of slots, runs or ranges")]
    TooManyEntries { max: usize },
    #[error("run {index} is empty")]
    EmptyRun { index: usize },
    #[error("the runs cover {covered} slots, the record declares {declared}")]
    CountMismatch { declared: usize, covered: usize },
    #[error(
        "published range {index} ({start}..{end}) is empty, out of order or past {count} slots"
    )]
    BadRange {
        index: usize,
        start: usize,
        end: usize,
        count: usize,
    },
    #[error("the published flags hold {0:?}, not only '0' and '1'")]
    BadFlag(char),
}

/// `length` neighbouring slots in `state` (for published runs: the latest time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRun {
    pub length: usize,
    pub state: SlotState,
}

/// The stored form of `SessionState::slots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodedSlots {
    pub count: usize,
    #[serde(deserialize_with = "at_most_max_plan_slots")]
    pub runs: Vec<SlotRun>,
}

/// A list with more entries than any plan has slots is refused as it is read
/// (each run or range holds at least one slot), so a record of millions of
/// tiny runs never becomes a vector of them.
fn at_most_max_plan_slots<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a list of at most {MAX_PLAN_SLOTS} entries")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = seq.next_element()? {
                if entries.len() == MAX_PLAN_SLOTS {
                    return Err(de::Error::custom(SlotRunsError::TooManyEntries {
                        max: MAX_PLAN_SLOTS,
                    }));
                }
                entries.push(entry);
            }
            Ok(entries)
        }
    }

    deserializer.deserialize_seq(Bounded(std::marker::PhantomData))
}

/// Whether `next` continues the run holding `current` (published slots always do).
fn same_run(current: &SlotState, next: &SlotState) -> bool {
    match (current, next) {
        (SlotState::Published { .. }, SlotState::Published { .. }) => true,
        _ => current == next,
    }
}

impl EncodedSlots {
    pub fn encode(slots: &[SlotState]) -> Self {
        let mut runs: Vec<SlotRun> = Vec::new();
        for slot in slots {
            match runs.last_mut() {
                Some(run) if same_run(&run.state, slot) => {
                    run.length += 1;
                    if let (
                        SlotState::Published { at_ms: latest },
                        SlotState::Published { at_ms },
                    ) = (&mut run.state, slot)
                    {
                        *latest = (*latest).max(*at_ms);
                    }
                }
                _ => runs.push(SlotRun {
                    length: 1,
                    state: slot.clone(),
                }),
            }
        }
        Self {
            count: slots.len(),
            runs,
        }
    }

    /// The slots again, after checking the runs against the declared count
    /// (at most `max_slots`) before allocating anything.
    pub fn decode(&self, max_slots: usize) -> Result<Vec<SlotState>, SlotRunsError> {
        check_count(self.count, max_slots)?;
        let mut covered = 0usize;
        for (index, run) in self.runs.iter().enumerate() {
            if run.length == 0 {
                return Err(SlotRunsError::EmptyRun { index });
            }
            covered = covered.saturating_add(run.length);
        }
        if covered != self.count {
            return Err(SlotRunsError::CountMismatch {
                declared: self.count,
                covered,
            });
        }
        let mut slots = Vec::with_capacity(self.count);
        for run in &self.runs {
            slots.extend(std::iter::repeat_n(run.state.clone(), run.length));
        }
        Ok(slots)
    }
}

fn check_count(count: usize, max: usize) -> Result<(), SlotRunsError> {
    if count > max {
        return Err(SlotRunsError::TooManySlots { count, max });
    }
    Ok(())
}

impl Serialize for SlotRun {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let detail_len = usize::from(!matches!(self.state, SlotState::Pending));
        let mut run = serializer.serialize_tuple(2 + detail_len)?;
        run.serialize_element(&self.length)?;
        run.serialize_element(&self.state.letter())?;
        match &self.state {
            SlotState::Pending => {}
            SlotState::Assigned {
                lease_expires_ms: ms,
            }
            | SlotState::Uploaded { at_ms: ms }
            | SlotState::Published { at_ms: ms } => run.serialize_element(ms)?,
            SlotState::Failed { reason } => run.serialize_element(reason)?,
        }
        run.end()
    }
}

impl<'de> Deserialize<'de> for SlotRun {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(SlotRunVisitor)
    }
}

struct SlotRunVisitor;

impl<'de> Visitor<'de> for SlotRunVisitor {
    type Value = SlotRun;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a run [length, letter] or [length, letter, detail]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SlotRun, A::Error> {
        let length: usize = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        // a String, not a char: a longer string is refused by the match below, not by serde
        let letter: String = seq
            .next_element()?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let mut ms = || -> Result<u64, A::Error> {
            seq.next_element()?
                .ok_or_else(|| de::Error::invalid_length(2, &SlotRunVisitor))
        };
        let state = match letter.as_str() {
            "p" => SlotState::Pending,
            "a" => SlotState::Assigned {
                lease_expires_ms: ms()?,
            },
            "u" => SlotState::Uploaded { at_ms: ms()? },
            "P" => SlotState::Published { at_ms: ms()? },
            "f" => SlotState::Failed {
                reason: seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?,
            },
            other => {
                return Err(de::Error::invalid_value(
                    de::Unexpected::Str(other),
                    &"one of p, a, u, P, f",
                ))
            }
        };
        if seq.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("a run has at most 3 elements"));
        }
        Ok(SlotRun { length, state })
    }
}

/// `#[serde(with)]` for `SessionState::slots`: written as [`EncodedSlots`],
/// read from that or from the earlier array of one object per slot.
pub mod slots_field {
    use super::*;

    pub fn serialize<S: Serializer>(slots: &[SlotState], serializer: S) -> Result<S::Ok, S::Error> {
        EncodedSlots::encode(slots).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<SlotState>, D::Error> {
        deserializer.deserialize_any(SlotsVisitor)
    }

    struct SlotsVisitor;

    impl<'de> Visitor<'de> for SlotsVisitor {
        type Value = Vec<SlotState>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("slot runs {count, runs} or an array of slot states")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let encoded = EncodedSlots::deserialize(de::value::MapAccessDeserializer::new(map))?;
            encoded.decode(MAX_PLAN_SLOTS).map_err(de::Error::custom)
        }

        /// The form before runs: one object per slot.
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            at_most_max_plan_slots(de::value::SeqAccessDeserializer::new(seq))
        }
    }
}

/// The stored form of `PublishState::published` (in memory: one `0`/`1` per slot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncodedFlags {
    pub count: usize,
    /// `[start, end)` of each run of published slots, in order, not touching.
    #[serde(deserialize_with = "at_most_max_plan_slots")]
    pub ranges: Vec<(usize, usize)>,
}

impl EncodedFlags {
    pub fn encode(flags: &str) -> Self {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for (slot, flag) in flags.bytes().enumerate() {
            if flag != b'1' {
                continue;
            }
            match ranges.last_mut() {
                Some((_, end)) if *end == slot => *end += 1,
                _ => ranges.push((slot, slot + 1)),
            }
        }
        Self {
            count: flags.len(),
            ranges,
        }
    }

    pub fn decode(&self, max_slots: usize) -> Result<String, SlotRunsError> {
        check_count(self.count, max_slots)?;
        let mut previous_end = 0;
        for (index, &(start, end)) in self.ranges.iter().enumerate() {
            let touches_previous = index > 0 && start <= previous_end;
            if start >= end || end > self.count || touches_previous {
                return Err(SlotRunsError::BadRange {
                    index,
                    start,
                    end,
                    count: self.count,
                });
            }
            previous_end = end;
        }
        let mut flags = String::with_capacity(self.count);
        for &(start, end) in &self.ranges {
            flags.extend(std::iter::repeat_n('0', start.saturating_sub(flags.len())));
            flags.extend(std::iter::repeat_n('1', end - start));
        }
        flags.extend(std::iter::repeat_n(
            '0',
            self.count.saturating_sub(flags.len()),
        ));
        Ok(flags)
    }
}

/// `#[serde(with)]` for `PublishState::published`: written as [`EncodedFlags`],
/// read from that or from the earlier string of one `0`/`1` per slot.
pub mod flags_field {
    use super::*;

    pub fn serialize<S: Serializer>(flags: &str, serializer: S) -> Result<S::Ok, S::Error> {
        EncodedFlags::encode(flags).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(FlagsVisitor)
    }

    struct FlagsVisitor;

    impl<'de> Visitor<'de> for FlagsVisitor {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("published ranges {count, ranges} or a string of 0 and 1")
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<String, A::Error> {
            let encoded = EncodedFlags::deserialize(de::value::MapAccessDeserializer::new(map))?;
            encoded.decode(MAX_PLAN_SLOTS).map_err(de::Error::custom)
        }

        /// The form before ranges: one character per slot.
        fn visit_str<E: de::Error>(self, flags: &str) -> Result<String, E> {
            check_count(flags.len(), MAX_PLAN_SLOTS).map_err(E::custom)?;
            if let Some(bad) = flags.chars().find(|c| *c != '0' && *c != '1') {
                return Err(E::custom(SlotRunsError::BadFlag(bad)));
            }
            Ok(flags.to_string())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::published::PublishState;
    use crate::state::{Lane, SessionState, UploadRecord};

    /// A small deterministic generator (xorshift64*), so a failure is reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Slot states in stretches, with few distinct times and reasons, so that
    /// equal neighbours (runs) and unequal ones both occur.
    fn random_slots(rng: &mut Rng, count: usize) -> Vec<SlotState> {
        let mut slots = Vec::with_capacity(count);
        while slots.len() < count {
            let state = match rng.below(5) {
                0 => SlotState::Pending,
                1 => SlotState::Assigned {
                    lease_expires_ms: rng.below(3),
                },
                2 => SlotState::Uploaded {
                    at_ms: rng.below(3),
                },
                3 => SlotState::Published {
                    at_ms: rng.below(3),
                },
                _ => SlotState::Failed {
                    reason: ["bad tfdt", "", "\"quoted\" \\ ünïcode"][rng.below(3) as usize]
                        .to_string(),
                },
            };
            let stretch = 1 + rng.below(6) as usize;
            slots.extend(std::iter::repeat_n(state, stretch.min(count - slots.len())));
        }
        slots
    }

    /// What decoding gives back: each stretch of published slots at its latest time.
    fn published_by_the_latest(slots: &[SlotState]) -> Vec<SlotState> {
        let mut out = slots.to_vec();
        let mut start = 0;
        while start < out.len() {
            let end = (start..out.len())
                .find(|&i| !matches!(out[i], SlotState::Published { .. }))
                .unwrap_or(out.len());
            let latest = out[start..end]
                .iter()
                .filter_map(|s| match s {
                    SlotState::Published { at_ms } => Some(*at_ms),
                    _ => None,
                })
                .max();
            if let Some(latest) = latest {
                out[start..end].fill(SlotState::Published { at_ms: latest });
            }
            start = end + 1;
        }
        out
    }

    #[test]
    fn random_slot_states_encode_and_decode_to_themselves_with_published_runs_at_their_latest_time()
    {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut exact = 0;
        for case in 0..2_000 {
            let count = rng.below(60) as usize;
            let slots = random_slots(&mut rng, count);
            let encoded = EncodedSlots::encode(&slots);
            let json = serde_json::to_string(&encoded).unwrap();
            let back: EncodedSlots = serde_json::from_str(&json).unwrap();
            assert_eq!(back, encoded, "case {case}: {json}");
            let decoded = back.decode(MAX_PLAN_SLOTS).unwrap();
            assert_eq!(decoded, published_by_the_latest(&slots), "case {case}");
            if decoded == slots {
                exact += 1;
            }
            // encoding is stable: what was decoded encodes the same
            assert_eq!(EncodedSlots::encode(&decoded), encoded, "case {case}");
            // no two neighbouring runs could have been one
            assert!(encoded
                .runs
                .windows(2)
                .all(|w| !same_run(&w[0].state, &w[1].state)));
        }
        assert!(exact > 500, "only {exact} cases without a time to merge");
    }

    #[test]
    fn random_published_flags_encode_and_decode_to_themselves() {
        let mut rng = Rng(7);
        for case in 0..2_000 {
            let count = rng.below(80) as usize;
            let mut flags = String::new();
            while flags.len() < count {
                let flag = if rng.below(2) == 0 { '0' } else { '1' };
                let stretch = (1 + rng.below(5) as usize).min(count - flags.len());
                flags.extend(std::iter::repeat_n(flag, stretch));
            }
            let encoded = EncodedFlags::encode(&flags);
            let json = serde_json::to_string(&encoded).unwrap();
            let back: EncodedFlags = serde_json::from_str(&json).unwrap();
            assert_eq!(back.decode(MAX_PLAN_SLOTS).unwrap(), flags, "case {case}");
        }
    }

    #[test]
    fn a_session_state_round_trips_through_its_stored_json() {
        let mut rng = Rng(42);
        for _ in 0..200 {
            let count = 1 + rng.below(40) as usize;
            let mut state = SessionState::with_inits(count, 2, 5);
            state.slots = random_slots(&mut rng, count);
            for (slot, s) in state.slots.iter().enumerate() {
                if matches!(s, SlotState::Uploaded { .. }) {
                    state.uploads.insert(
                        slot,
                        UploadRecord {
                            etags: vec![format!("\"{slot}\"")],
                            lane: Lane::Normal,
                        },
                    );
                }
            }
            let back: SessionState =
                serde_json::from_str(&serde_json::to_string(&state).unwrap()).unwrap();
            let mut expected = state.clone();
            expected.slots = published_by_the_latest(&state.slots);
            assert_eq!(back, expected);
        }
    }

    fn fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn etags(slot: usize) -> Vec<String> {
        vec![format!("\"e{slot}0\""), format!("\"e{slot}1\"")]
    }

    /// The fixtures were written by the code before runs (`serde_json` of the
    /// derived types): a 12-slot session mid-upload, and a pre-split record.
    #[test]
    fn records_stored_before_runs_are_still_read() {
        let uploader: SessionState = fixture("state-before-runs.json");
        let worker: PublishState = fixture("published-before-runs.json");
        let published = SlotState::Published {
            at_ms: 1_733_000_007_000,
        };
        let lease = SlotState::Assigned {
            lease_expires_ms: 1_733_000_121_000,
        };
        let mut expected = vec![published.clone(), published];
        expected.push(SlotState::Uploaded {
            at_ms: 1_733_000_004_000,
        });
        expected.push(SlotState::Uploaded {
            at_ms: 1_733_000_005_000,
        });
        expected.extend([lease.clone(), lease]);
        expected.extend(std::iter::repeat_n(SlotState::Pending, 6));
        assert_eq!(uploader.slots, expected);
        assert_eq!(uploader.uploads[&3].etags, etags(3));
        assert_eq!(worker.published, "110000000000");
        assert_eq!(worker.failed[&2].etags, etags(2));
        let merged = uploader.clone().merged(&worker);
        assert_eq!(
            merged.slots[2].name(),
            "failed",
            "the refusal of that version"
        );
        // written again, in the new form, and read back as the same
        let json = serde_json::to_string(&uploader).unwrap();
        assert!(
            json.contains(r#""slots":{"count":12,"runs":[[2,"P","#),
            "{json}"
        );
        let json = serde_json::to_string(&worker).unwrap();
        assert!(
            json.contains(r#""published":{"count":12,"ranges":[[0,2]]}"#),
            "{json}"
        );
        let again: SessionState =
            serde_json::from_str(&serde_json::to_string(&uploader).unwrap()).unwrap();
        assert_eq!(again, uploader);
        let again: PublishState =
            serde_json::from_str(&serde_json::to_string(&worker).unwrap()).unwrap();
        assert_eq!(again, worker);

        let legacy: SessionState = fixture("state-pre-split.json");
        assert_eq!(
            legacy.slots.iter().map(SlotState::name).collect::<Vec<_>>(),
            ["published", "uploaded", "failed", "pending", "pending"]
        );
        assert_eq!(
            legacy.slots[2],
            SlotState::Failed {
                reason: "bad moof".into()
            }
        );
        assert_eq!(PublishState::from_legacy(&legacy).published, "10000");
    }

    fn decode_slots(json: &str) -> Result<Vec<SlotState>, String> {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(with = "slots_field")]
            #[allow(dead_code)]
            slots: Vec<SlotState>,
        }
        serde_json::from_str::<Holder>(&format!(r#"{{"slots": {json}}}"#))
            .map(|h| h.slots)
            .map_err(|e| e.to_string())
    }

    fn decode_flags(json: &str) -> Result<String, String> {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(with = "flags_field")]
            published: String,
        }
        serde_json::from_str::<Holder>(&format!(r#"{{"published": {json}}}"#))
            .map(|h| h.published)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn corrupt_or_oversize_slot_records_are_errors_and_allocate_nothing_they_claim() {
        // billions claimed: refused before any allocation (this would be ~100 GB)
        let err = decode_slots(r#"{"count": 4000000000, "runs": [[4000000000, "p"]]}"#);
        assert!(err.unwrap_err().contains("no plan has more than"));
        let err = decode_slots(r#"{"count": 3, "runs": [[4000000000, "p"]]}"#);
        assert!(err.unwrap_err().contains("cover 4000000000 slots"));
        let err = decode_slots(&format!(
            r#"{{"count": 2, "runs": [[{}, "p"], [3, "p"]]}}"#,
            usize::MAX
        ));
        assert!(
            err.unwrap_err().contains("declares 2"),
            "an overflowing sum"
        );
        for (bad, why) in [
            (
                r#"{"count": 2, "runs": [[1, "p"], [0, "p"], [1, "p"]]}"#,
                "empty",
            ),
            (
                r#"{"count": 1, "runs": [[1, "x"]]}"#,
                "one of p, a, u, P, f",
            ),
            (r#"{"count": 1, "runs": [[1, "a"]]}"#, "invalid length"),
            (r#"{"count": 1, "runs": [[1, "f", 7]]}"#, "invalid type"),
            (r#"{"count": 1, "runs": [[1, "p", 7]]}"#, "at most 3"),
            (r#"{"count": 1, "runs": [[-1, "p"]]}"#, "invalid value"),
            (
                r#"{"count": 1, "runs": [[1, "p"]], "more": 1}"#,
                "unknown field",
            ),
            (r#"{"runs": [[1, "p"]]}"#, "missing field"),
            (r#""pppp""#, "expected slot runs"),
            (r#"[{"state": "sideways"}]"#, "unknown variant"),
        ] {
            let err = decode_slots(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            decode_slots(r#"{"count": 0, "runs": []}"#).unwrap(),
            Vec::new()
        );
        // more runs than any plan has slots: refused while they are read
        let many_runs = format!(
            r#"{{"count": 1, "runs": [{}]}}"#,
            vec![r#"[1,"p"]"#; MAX_PLAN_SLOTS + 1].join(",")
        );
        assert!(decode_slots(&many_runs)
            .unwrap_err()
            .contains("more than 100000 entries"));
        let many_ranges = format!(
            r#"{{"count": 1, "ranges": [{}]}}"#,
            vec!["[0,1]"; MAX_PLAN_SLOTS + 1].join(",")
        );
        assert!(decode_flags(&many_ranges)
            .unwrap_err()
            .contains("more than 100000 entries"));
        // the form before runs is bounded too
        let too_long = format!(
            "[{}]",
            vec![r#"{"state":"pending"}"#; MAX_PLAN_SLOTS + 1].join(",")
        );
        assert!(decode_slots(&too_long)
            .unwrap_err()
            .contains("more than 100000 entries"));

        for (bad, why) in [
            (
                r#"{"count": 4000000000, "ranges": []}"#,
                "no plan has more than",
            ),
            (r#"{"count": 5, "ranges": [[2, 2]]}"#, "is empty"),
            (r#"{"count": 5, "ranges": [[3, 6]]}"#, "past 5 slots"),
            (
                r#"{"count": 5, "ranges": [[2, 3], [1, 2]]}"#,
                "out of order",
            ),
            (
                r#"{"count": 5, "ranges": [[0, 2], [2, 3]]}"#,
                "out of order",
            ),
            (r#""0120""#, "not only '0' and '1'"),
            ("7", "expected published ranges"),
        ] {
            let err = decode_flags(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            decode_flags(r#"{"count": 6, "ranges": [[1, 3], [4, 5]]}"#).unwrap(),
            "011010"
        );
        assert_eq!(decode_flags(r#""0110""#).unwrap(), "0110");
    }

    /// A natural-order upload partly done, with islands where viewers seeked:
    /// what `state.json` and `published.json` hold for it.
    fn natural_upload_with_islands(count: usize) -> (SessionState, PublishState) {
        let mut s = SessionState::with_inits(count, 2, 1_733_000_000_000);
        let mut w = PublishState::new(count, 2, 1_733_000_000_000);
        let frontier = count * 3 / 10;
        for island in [count / 2, count * 3 / 4] {
            for slot in island..island + 6 {
                w.mark_published(slot, 1_733_000_100_000 + slot as u64)
                    .unwrap();
            }
        }
        for slot in 0..frontier {
            // published one by one, each at its own time
            w.mark_published(slot, 1_733_000_000_000 + 1_000 * slot as u64)
                .unwrap();
        }
        let mut merged = s.clone().merged(&w);
        for slot in frontier..frontier + 4 {
            merged.slots[slot] = SlotState::Uploaded {
                at_ms: 1_733_000_200_000 + slot as u64,
            };
            merged.uploads.insert(
                slot,
                UploadRecord {
                    etags: etags(slot),
                    lane: Lane::Normal,
                },
            );
        }
        merged.slots[frontier + 4..frontier + 8].fill(SlotState::Assigned {
            lease_expires_ms: 1_733_000_300_000,
        });
        s = merged.upload_part(&s);
        (s, w)
    }

    #[test]
    fn the_stored_records_of_a_natural_upload_do_not_grow_with_the_slot_count() {
        let size = |count| {
            let (s, w) = natural_upload_with_islands(count);
            (
                serde_json::to_string(&s).unwrap().len(),
                serde_json::to_string(&w).unwrap().len(),
            )
        };
        let (small_state, small_published) = size(100);
        let (big_state, big_published) = size(20_000);
        assert!(big_state < 1_000, "state.json: {big_state} B");
        assert!(big_published < 300, "published.json: {big_published} B");
        // only the numbers get longer
        assert!(big_state < small_state + 100, "{small_state} → {big_state}");
        assert!(
            big_published < small_published + 50,
            "{small_published} → {big_published}"
        );
    }
}
