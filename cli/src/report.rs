//! What the user sees: a progress bar (indicatif: bytes, rate, ETA, parts
//! playable) and messages on stderr with the share link on stdout — or, with
//! `--json`, one JSON event per line on stdout (`link`, `progress`, `warning`,
//! `done`, `error`, `interrupted`; while uploading also `priority`, `part` (with
//! `batched` once reported in a `next` call), `reports` (finished parts reported
//! together: `count`, `slots`, `via`, `reason`), `yield` and `feed`:
//! `{"mode": "wake"|"held", "wake_disabled": bool}` whenever the priority feed changes
//! how it waits — on the server's wake-up URL while no viewer waits for a part, or
//! holding the long poll — and `{"ran_out": n, "skipped_feed": bool}` after a wake-up
//! that ran out) for scripts. The README's CLI section lists every field.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

/// Counters the uploader updates and the reporter reads.
#[derive(Default)]
pub struct Progress {
    /// bytes of parts (and init segments) known uploaded or published
    pub bytes_done: AtomicU64,
    /// bytes of parts being sent right now that have crossed the link
    pub bytes_in_flight: AtomicU64,
    /// bytes sent by this run (all attempts), for the rate
    pub bytes_sent: AtomicU64,
    pub bytes_total: AtomicU64,
    pub parts_published: AtomicUsize,
    pub parts_uploaded: AtomicUsize,
    pub part_count: AtomicUsize,
}

impl Progress {
    pub fn done_now(&self) -> u64 {
        (self.bytes_done.load(Ordering::Relaxed) + self.bytes_in_flight.load(Ordering::Relaxed))
            .min(self.bytes_total.load(Ordering::Relaxed))
    }
}

#[derive(Clone)]
pub struct Reporter {
    json: bool,
    bar: Option<ProgressBar>,
    rate: Arc<Mutex<VecDeque<(Instant, u64)>>>,
}

const RATE_WINDOW: Duration = Duration::from_secs(8);

impl Reporter {
    pub fn new(json: bool) -> Self {
        Self {
            json,
            bar: None,
            rate: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    pub fn event(&self, kind: &str, mut fields: Value) {
        if !self.json {
            return;
        }
        if let Some(m) = fields.as_object_mut() {
            m.insert("event".into(), Value::String(kind.into()));
        }
        // a closed stdout (`| head -1`) must not kill the upload
        use std::io::Write;
        let _ = writeln!(std::io::stdout().lock(), "{fields}");
    }

    /// A line for humans (stderr, above the bar), or a `kind` event in JSON mode.
    pub fn say(&self, kind: &str, message: &str) {
        if self.json {
            self.event(kind, json!({ "message": message }));
        } else if let Some(bar) = &self.bar {
            bar.suspend(|| eprintln!("{message}"));
        } else {
            eprintln!("{message}");
        }
    }

    pub fn link(&self, fields: Value) {
        if self.json {
            self.event("link", fields);
        } else {
            let watch = fields["watch_url"].as_str().unwrap_or_default();
            let resumed = fields["resumed"].as_bool().unwrap_or(false);
            eprintln!(
                "{}",
                if resumed {
                    "Resuming; the link is the same as before:"
                } else {
                    "Share this link (it plays while the upload goes on):"
                }
            );
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{watch}");
        }
    }

    pub fn start_bar(&mut self, total: u64) {
        if self.json {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(4));
        let style = ProgressStyle::with_template(
            "{bar:30.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        self.bar = Some(bar);
    }

    fn rate(&self, sent: u64) -> f64 {
        let now = Instant::now();
        let Ok(mut r) = self.rate.lock() else {
            return 0.0;
        };
        r.push_back((now, sent));
        while r
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            r.pop_front();
        }
        match (r.front(), r.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
                (b1 - b0) as f64 / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    pub fn progress(&self, p: &Progress) {
        let done = p.done_now();
        let total = p.bytes_total.load(Ordering::Relaxed);
        let published = p.parts_published.load(Ordering::Relaxed);
        let count = p.part_count.load(Ordering::Relaxed);
        let rate = self.rate(p.bytes_sent.load(Ordering::Relaxed));
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(format!("{published}/{count} parts playable"));
        }
        if self.json {
            let left = total.saturating_sub(done);
            let eta = if left == 0 {
                Some(0.0)
            } else if rate > 0.0 {
                Some((left as f64 / rate).round())
            } else {
                None
            };
            self.event(
                "progress",
                json!({
                    "bytes_done": done, "bytes_total": total, "bytes_per_second": rate.round(),
                    "eta_seconds": eta, "parts_published": published,
                    "parts_uploaded": p.parts_uploaded.load(Ordering::Relaxed), "part_count": count,
                }),
            );
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }

    pub fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}
