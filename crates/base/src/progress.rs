//! Progress of long work (sweeps, bootstraps, model loading, checkpoint copies, training) that
//! shows in any log: an indicatif bar on a terminal; elsewhere (Slurm, Kubernetes, a pipe) a plain
//! line `LABEL: done/total UNIT (rate/s, ETA …)` at most every [`PLAIN_INTERVAL`], and one at the
//! end. `TOKENSCALE_PROGRESS_SECS` overrides the interval (0 = every step).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The shortest time between two plain progress lines.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// One task's progress; cheap to update from a loop, safe to share between threads.
pub struct Progress {
    label: String,
    unit: String,
    total: u64,
    shape: Shape,
}

enum Shape {
    Bar(ProgressBar),
    Plain(Mutex<Plain>),
}

struct Plain {
    done: u64,
    /// Shown after the counts (e.g. the current loss).
    message: String,
    /// Steps done before this process started (a resumed run): not counted in the rate.
    resumed_at: u64,
    start: Instant,
    last_line: Instant,
    interval: Duration,
    out: Box<dyn Write + Send>,
}

fn interval_from_env() -> Duration {
    std::env::var("TOKENSCALE_PROGRESS_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(PLAIN_INTERVAL, Duration::from_secs_f64)
}

/// `1h02m`, `3m05s`, `12s`.
fn clock(secs: f64) -> String {
    let s = secs.round() as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

impl Progress {
    /// Progress over `total` steps of `unit` (e.g. "answers", "bytes"), drawn on stderr.
    pub fn new(label: &str, total: u64, unit: &str) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(&format!("{{msg}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit}  ETA {{eta_precise}}")) {
                bar.set_style(style);
            }
            bar.set_message(label.to_string());
            return Self { label: label.into(), unit: unit.into(), total, shape: Shape::Bar(bar) };
        }
        Self::plain(label, total, unit, interval_from_env(), Box::new(std::io::stderr()))
    }

    /// Plain lines to `out` at most every `interval` (what [`Progress::new`] does off a terminal).
    pub fn plain(
        label: &str,
        total: u64,
        unit: &str,
        interval: Duration,
        out: Box<dyn Write + Send>,
    ) -> Self {
        let now = Instant::now();
        let plain = Plain {
            done: 0,
            message: String::new(),
            resumed_at: 0,
            start: now,
            last_line: now,
            interval,
            out,
        };
        Self {
            label: label.into(),
            unit: unit.into(),
            total,
            shape: Shape::Plain(Mutex::new(plain)),
        }
    }

    /// Count `steps` more done.
    pub fn inc(&self, steps: u64) {
        match &self.shape {
            Shape::Bar(bar) => bar.inc(steps),
            Shape::Plain(plain) => {
                if let Ok(mut p) = plain.lock() {
                    let done = p.done + steps;
                    self.advance(&mut p, done);
                }
            }
        }
        self.clear_bar_when_complete();
    }

    /// Work resumed part-way: `done` steps were done before (they do not count in the rate).
    pub fn resume_at(&self, done: u64) {
        match &self.shape {
            Shape::Bar(bar) => bar.set_position(done),
            Shape::Plain(plain) => {
                if let Ok(mut p) = plain.lock() {
                    p.done = done;
                    p.resumed_at = done;
                }
            }
        }
    }

    /// Set how many steps are done.
    pub fn set_position(&self, done: u64) {
        match &self.shape {
            Shape::Bar(bar) => bar.set_position(done),
            Shape::Plain(plain) => {
                if let Ok(mut p) = plain.lock() {
                    self.advance(&mut p, done);
                }
            }
        }
        self.clear_bar_when_complete();
    }

    /// Text shown after the counts, e.g. the current loss.
    pub fn set_message(&self, message: &str) {
        match &self.shape {
            Shape::Bar(bar) => bar.set_message(format!("{} {message}", self.label)),
            Shape::Plain(plain) => {
                if let Ok(mut p) = plain.lock() {
                    p.message = message.to_string();
                }
            }
        }
    }

    fn advance(&self, p: &mut Plain, done: u64) {
        p.done = done;
        if p.last_line.elapsed() >= p.interval && p.done < self.total {
            self.write_line(p);
        }
    }

    /// A bar left on the terminal after the work (a model whose weights stay open) would sit
    /// between later output: it goes once complete.
    fn clear_bar_when_complete(&self) {
        if let Shape::Bar(bar) = &self.shape {
            if bar.position() >= self.total {
                bar.finish_and_clear();
            }
        }
    }

    /// The work is over: clear the bar, or write the final plain line.
    pub fn finish(&self) {
        match &self.shape {
            Shape::Bar(bar) => bar.finish_and_clear(),
            Shape::Plain(plain) => {
                if let Ok(mut p) = plain.lock() {
                    self.write_line(&mut p);
                }
            }
        }
    }

    /// Print a message above the bar (or as its own line).
    pub fn println(&self, message: &str) {
        match &self.shape {
            Shape::Bar(bar) => bar.println(message),
            Shape::Plain(plain) => {
                if let Ok(mut p) = plain.lock() {
                    let _ = writeln!(p.out, "{message}");
                }
            }
        }
    }

    fn write_line(&self, p: &mut Plain) {
        let elapsed = p.start.elapsed().as_secs_f64();
        let rate =
            if elapsed > 0.0 { (p.done - p.resumed_at.min(p.done)) as f64 / elapsed } else { 0.0 };
        let tail = if p.done >= self.total {
            format!("done in {}", clock(elapsed))
        } else if rate > 0.0 {
            format!("ETA {}", clock((self.total - p.done) as f64 / rate))
        } else {
            "ETA unknown".into()
        };
        let rate = if rate >= 10.0 { format!("{rate:.0}") } else { format!("{rate:.2}") };
        let message = if p.message.is_empty() { String::new() } else { format!(" {}", p.message) };
        let _ = writeln!(
            p.out,
            "{}: {}/{} {} ({rate}/s, {tail}){message}",
            self.label, p.done, self.total, self.unit
        );
        p.last_line = Instant::now();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Shape::Bar(bar) = &self.shape {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(s: &Shared) -> String {
        String::from_utf8(s.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn plain_lines_are_rate_limited_and_the_last_one_says_done() {
        let out = Shared::default();
        let p = Progress::plain(
            "eval m/pool",
            4,
            "answers",
            Duration::from_secs(3600),
            Box::new(out.clone()),
        );
        for _ in 0..4 {
            p.inc(1);
        }
        assert_eq!(text(&out), "", "a line before the interval passed");
        p.finish();
        let t = text(&out);
        assert!(t.starts_with("eval m/pool: 4/4 answers (") && t.contains("done in"), "{t}");

        let out = Shared::default();
        let p = Progress::plain("fit", 3, "fits", Duration::ZERO, Box::new(out.clone()));
        p.inc(1);
        p.set_message("loss 0.5");
        p.set_position(2);
        p.inc(1);
        p.finish();
        let lines: Vec<String> = text(&out).lines().map(str::to_string).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].starts_with("fit: 1/3 fits (") && lines[0].contains("ETA"), "{lines:?}");
        assert!(
            lines[1].starts_with("fit: 2/3 fits") && lines[1].ends_with(") loss 0.5"),
            "{lines:?}"
        );
        assert!(lines[2].starts_with("fit: 3/3 fits"), "{lines:?}");
    }

    #[test]
    fn clock_reads_naturally() {
        assert_eq!(clock(12.2), "12s");
        assert_eq!(clock(185.0), "3m05s");
        assert_eq!(clock(3720.0), "1h02m");
    }
}
