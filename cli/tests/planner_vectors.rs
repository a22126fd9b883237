//! The shared planner vectors (testdata/planner/*.json, written by the page's planner —
//! see generate.ts there): the CLI's planner must produce exactly the same plan. The web
//! suite runs the same files (web/test/planner-vectors.test.ts).

use std::path::PathBuf;

use chunkstream_cli::planner::{
    auto_target_duration, default_options_for, plan_segments, validate_plan, Plan, PlanOptions,
    PlanTrackInput,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    description: String,
    /// null: each side's defaults
    options: Option<PlanOptions>,
    tracks: Vec<PlanTrackInput>,
    expected: Plan,
}

fn vectors() -> Vec<(String, Vector)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/planner");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("testdata/planner exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("readable vector");
            let v: Vector =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            out.push((
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                v,
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn cli_planner_matches_every_shared_vector() {
    let all = vectors();
    assert!(
        all.len() >= 10,
        "expected the shared vectors, found {}",
        all.len()
    );
    for (name, v) in &all {
        let options = v.options.unwrap_or_else(|| default_options_for(&v.tracks));
        let plan = plan_segments(&v.tracks, options).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            validate_plan(&v.tracks, &plan),
            Vec::<String>::new(),
            "{name}"
        );
        if plan != v.expected {
            let first = plan
                .slots
                .iter()
                .zip(&v.expected.slots)
                .position(|(a, b)| a != b);
            panic!(
                "{name} ({}): the CLI plans {} slots, the page {}; first differing slot {first:?}\nCLI:  {:?}\npage: {:?}",
                v.description,
                plan.slots.len(),
                v.expected.slots.len(),
                first.and_then(|i| plan.slots.get(i)),
                first.and_then(|i| v.expected.slots.get(i)),
            );
        }
    }
}

fn by_default(name: &str) -> bool {
    name == "defaults.json" || name.starts_with("auto-")
}

#[test]
fn default_option_vectors_pin_the_automatic_part_duration_like_the_page() {
    let mut durations = Vec::new();
    for (name, v) in vectors().iter().filter(|(n, _)| by_default(n)) {
        assert!(
            v.options.is_none(),
            "{name} must plan with each side's defaults"
        );
        assert_eq!(
            v.expected.options,
            PlanOptions {
                target_duration: auto_target_duration(&v.tracks),
                ..PlanOptions::default()
            },
            "{name}: the page chose other default options than the CLI (planner::auto_target_duration, DEFAULT_MAX_SEGMENT_BYTES)"
        );
        durations.push(v.expected.options.target_duration);
    }
    durations.sort_by(f64::total_cmp);
    assert_eq!(durations, [2.0, 4.0, 8.0]);
}

#[test]
fn vectors_state_their_options_explicitly_except_the_default_ones() {
    for (name, v) in vectors() {
        assert_eq!(v.options.is_none(), by_default(&name), "{name}");
    }
}
