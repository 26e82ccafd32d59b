//! Progress of an apply a person can watch: on a terminal, a live bar (tenants done of total,
//! the tenant in progress, rate, time left, failures so far); without one (CI), a plain line at
//! most every 5 s or every 10 %. Always on standard error, so standard output stays the report
//! (and JSON stays JSON); never with `--quiet`.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

/// What an apply tells its watcher.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A tenant's change begins.
    Started { tenant: &'a str },
    /// A tenant's change ended (applied, rolled back or blocked).
    Finished { tenant: &'a str, failed: bool },
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live bar on the terminal.
    Bar,
    /// A line now and then (no terminal).
    Lines,
    /// Nothing (`--quiet`).
    Off,
}

impl Mode {
    /// The mode for a run: nothing when quiet, a bar when standard error is a terminal.
    pub fn detect(quiet: bool, terminal: bool) -> Mode {
        match (quiet, terminal) {
            (true, _) => Mode::Off,
            (false, true) => Mode::Bar,
            (false, false) => Mode::Lines,
        }
    }
}

/// A plain progress line is written at most this often...
const LINE_EVERY: Duration = Duration::from_secs(5);
/// ...or when another tenth of the work is done.
const LINE_STEP_PERCENT: usize = 10;

/// The progress of one apply.
pub struct Progress {
    mode: Mode,
    total: usize,
    done: usize,
    failed: usize,
    started: Instant,
    /// A bar appears only once the run has lasted this long (watch's short reconciles stay
    /// quiet).
    delay: Duration,
    bar: Option<ProgressBar>,
    last_line: Instant,
    last_tenth: usize,
}

impl Progress {
    /// Progress of `total` tenants.
    pub fn new(mode: Mode, total: usize, delay: Duration) -> Progress {
        let now = Instant::now();
        Progress {
            mode,
            total,
            done: 0,
            failed: 0,
            started: now,
            delay,
            bar: None,
            last_line: now,
            last_tenth: 0,
        }
    }

    /// The number of tenants, once the plan says it.
    pub fn set_total(&mut self, total: usize) {
        self.total = total;
        if let Some(bar) = &self.bar {
            bar.set_length(total as u64);
        }
    }

    /// Records `event`, and shows it if it is time to.
    pub fn record(&mut self, event: Event<'_>) {
        match event {
            Event::Started { tenant } => {
                let status = self.status();
                if let Some(bar) = self.bar_if_due() {
                    bar.set_message(format!("{status}  {tenant}"));
                }
            }
            Event::Finished { failed, .. } => {
                self.done += 1;
                if failed {
                    self.failed += 1;
                }
                match self.mode {
                    Mode::Bar => {
                        let (done, failures) = (self.done as u64, self.failures());
                        if let Some(bar) = self.bar_if_due() {
                            bar.set_position(done);
                            bar.set_prefix(failures);
                        }
                    }
                    Mode::Lines => self.line_if_due(),
                    Mode::Off => {}
                }
            }
        }
    }

    /// Runs `print` (which writes to standard output) without tearing the bar.
    pub fn suspend<R>(&self, print: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }

    /// Takes the bar off the screen (the report follows).
    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn failures(&self) -> String {
        match self.failed {
            0 => String::new(),
            1 => " 1 failed".to_string(),
            n => format!(" {n} failed"),
        }
    }

    /// The bar, created once the run has lasted [`Self::delay`].
    fn bar_if_due(&mut self) -> Option<&ProgressBar> {
        if self.mode != Mode::Bar {
            return None;
        }
        if self.bar.is_none() && self.started.elapsed() >= self.delay {
            let bar = ProgressBar::with_draw_target(
                Some(self.total as u64),
                ProgressDrawTarget::stderr_with_hz(10),
            );
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} tenants{prefix}  {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(self.done as u64);
            bar.set_prefix(self.failures());
            self.bar = Some(bar);
        }
        self.bar.as_ref()
    }

    fn line_if_due(&mut self) {
        if self.total == 0 {
            return;
        }
        let tenth = self.done * 100 / self.total / LINE_STEP_PERCENT;
        let finished = self.done == self.total;
        if !(self.last_line.elapsed() >= LINE_EVERY || tenth > self.last_tenth) || finished {
            return;
        }
        self.last_tenth = tenth;
        self.last_line = Instant::now();
        eprintln!("{}", self.line());
    }

    /// Tenants per second so far, and the seconds left at that rate.
    fn pace(&self) -> (f64, u64) {
        let elapsed = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / elapsed;
        let left = if rate > 0.0 {
            (self.total.saturating_sub(self.done) as f64 / rate).ceil() as u64
        } else {
            0
        };
        (rate, left)
    }

    /// `410/s, about 21 s left`, once there is a rate.
    fn status(&self) -> String {
        match self.pace() {
            (rate, left) if rate > 0.0 => format!("{rate:.0}/s, about {left} s left"),
            _ => String::new(),
        }
    }

    /// `progress: 1,200 of 10,000 tenants (12%), 2 failed, 410/s, about 21 s left`.
    fn line(&self) -> String {
        let (rate, left) = self.pace();
        let mut line = format!(
            "progress: {} of {} tenants ({}%)",
            crate::render::thousands(self.done as u64),
            crate::render::thousands(self.total as u64),
            self.done * 100 / self.total
        );
        if self.failed > 0 {
            line.push_str(&format!(", {} failed", self.failed));
        }
        line.push_str(&format!(", {rate:.0}/s, about {left} s left"));
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_where_the_run_is() {
        let mut progress = Progress::new(Mode::Lines, 1000, Duration::ZERO);
        for index in 0..250 {
            progress.record(Event::Finished {
                tenant: "t",
                failed: index % 100 == 0,
            });
        }
        let line = progress.line();
        assert!(
            line.starts_with("progress: 250 of 1,000 tenants (25%), 3 failed, "),
            "{line}"
        );
        assert!(line.ends_with(" s left"), "{line}");
    }

    #[test]
    fn quiet_and_terminal_choose_the_mode() {
        assert_eq!(Mode::detect(true, true), Mode::Off);
        assert_eq!(Mode::detect(false, true), Mode::Bar);
        assert_eq!(Mode::detect(false, false), Mode::Lines);
    }
}
