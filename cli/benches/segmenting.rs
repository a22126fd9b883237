//! CLI segmentation benchmark (run by scripts/bench-cli.sh, which makes the media):
//! for each file argument, the raw sequential read of the file (4 MiB reads, the
//! baseline) then the CLI's own work — analyze + plan, and building every part's
//! bytes as the upload does — printing MB/s, their ratio and the process's peak RSS.
//! Same page-cache state for both: the file is read once before either is timed.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use chunkstream_cli::planner::{default_options_for, plan_segments};
use chunkstream_cli::segment::build_slot;
use chunkstream_cli::source::analyze;

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn raw_read(path: &PathBuf) -> (u64, f64) {
    let mut f = File::open(path).expect("bench file");
    let mut buf = vec![0u8; 4 << 20];
    let t = Instant::now();
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).expect("read");
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    (n, t.elapsed().as_secs_f64())
}

fn main() {
    let files: Vec<PathBuf> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .collect();
    if files.is_empty() {
        eprintln!("usage: cargo bench -p chunkstream-cli --bench segmenting -- FILE…  (see scripts/bench-cli.sh)");
        return;
    }
    for path in files {
        let _ = raw_read(&path); // warm the page cache: both runs below read from it
        let (bytes, raw_s) = raw_read(&path);
        let file = File::open(&path).expect("bench file");
        let size = file.metadata().expect("metadata").len();
        let t = Instant::now();
        let analysis = analyze(&file, size).expect("analyzable bench file");
        let analyze_s = t.elapsed().as_secs_f64();
        let inputs: Vec<_> = analysis.tracks.iter().map(|t| t.input.clone()).collect();
        let t = Instant::now();
        // the default settings: the part duration from the file's bitrate, as `upload` without --segment-secs
        let plan = plan_segments(&inputs, default_options_for(&inputs)).expect("plan");
        let plan_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut built = 0u64;
        // every track of a slot together, as the upload builds them
        let tracks: Vec<usize> = (0..analysis.tracks.len()).collect();
        for slot in 0..plan.slots.len() {
            built += build_slot(&file, &analysis, &plan, slot, &tracks)
                .expect("segment")
                .iter()
                .map(|body| body.len() as u64)
                .sum::<u64>();
        }
        let seg_s = t.elapsed().as_secs_f64();
        assert_eq!(built, plan.total_bytes, "built bytes equal the plan");
        let mb = |b: u64, s: f64| b as f64 / (1024.0 * 1024.0) / s;
        let samples: usize = analysis
            .tracks
            .iter()
            .map(|t| t.input.samples.count())
            .sum();
        println!(
            "{}\tsize_mb={:.0}\tduration_s={:.0}\tsamples={samples}\tparts={}\tmoov_kb={:.0}\tanalyze_ms={:.1}\tplan_ms={:.1}\traw_read_mb_s={:.0}\tsegmenting_mb_s={:.0}\tratio={:.2}\tpeak_rss_mb={:.1}",
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            size as f64 / (1024.0 * 1024.0),
            analysis.duration,
            plan.slots.len(),
            analysis.moov_bytes as f64 / 1024.0,
            analyze_s * 1000.0,
            plan_s * 1000.0,
            mb(bytes, raw_s),
            mb(built, seg_s),
            mb(built, seg_s) / mb(bytes, raw_s),
            peak_rss_mb(),
        );
    }
}
