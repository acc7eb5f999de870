//! Progress of install's long steps on a terminal: one line on stderr,
//! rewritten in place and cleared at the end. Only when stderr is a
//! terminal and the report is for people: scripts and logs get nothing.

use std::io::{IsTerminal, Write};

/// The line being shown, if any.
#[derive(Debug, Default)]
pub struct Progress {
    on: bool,
    shown: bool,
    /// Last percentage shown by [`Progress::bytes`], so a 350 MB write
    /// rewrites the line at most about a hundred times.
    last_percent: Option<u64>,
}

impl Progress {
    /// Shows nothing.
    pub fn off() -> Progress {
        Progress::default()
    }

    /// Shows progress when `wanted` and stderr is a terminal.
    pub fn for_terminal(wanted: bool) -> Progress {
        Progress {
            on: wanted && std::io::stderr().is_terminal(),
            ..Progress::default()
        }
    }

    /// Shows `msg` in place of the previous line.
    pub fn say(&mut self, msg: &str) {
        if !self.on {
            return;
        }
        self.last_percent = None;
        // \r back to the start, \x1b[K clears what a longer line left.
        let _ = write!(std::io::stderr().lock(), "\r{msg}\x1b[K");
        self.shown = true;
    }

    /// Shows `what` with `done` of `total` bytes, when the percentage moved.
    pub fn bytes(&mut self, what: &str, done: u64, total: u64) {
        if !self.on {
            return;
        }
        let percent = (done * 100).checked_div(total).unwrap_or(100);
        if self.last_percent == Some(percent) {
            return;
        }
        let mib = |n: u64| n as f64 / f64::from(1 << 20);
        let line = format!(
            "{what}: {:.0} of {:.0} MiB ({percent}%)",
            mib(done),
            mib(total)
        );
        self.say(&line);
        self.last_percent = Some(percent);
    }

    /// Clears the line (before the report, or an error, is printed).
    pub fn clear(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
            self.shown = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_shows_nothing_and_never_divides_by_zero() {
        let mut p = Progress::off();
        p.say("x");
        p.bytes("writing", 0, 0);
        assert!(!p.shown);
        // On, but the percentage of an empty file is 100, not a panic.
        let mut p = Progress {
            on: true,
            ..Progress::default()
        };
        p.bytes("writing", 0, 0);
        assert_eq!(p.last_percent, Some(100));
        p.bytes("writing", 5, 10);
        assert_eq!(p.last_percent, Some(50));
        p.clear();
        assert!(!p.shown);
    }
}
