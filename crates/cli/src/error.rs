//! The CLI's error: one line of what failed, and a hint when one helps.
//!
//! Every failure the CLI reports ends up as an [`Error`], printed once by
//! `main` as `qemu-shim: error: <message> (hint: <hint>)`.

use std::fmt;
use std::io;
use std::path::Path;

/// A failure to report to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    message: String,
    hint: Option<String>,
}

impl Error {
    /// An error saying `message` (lower case, no trailing period).
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with a hint on how to fix it.
    pub fn hint(mut self, hint: impl Into<String>) -> Error {
        self.hint = Some(hint.into());
        self
    }

    /// The same error with `context: ` in front of its message.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }

    /// The same error with `other`'s hint, if it has one.
    pub fn with_hint_of(mut self, other: &Error) -> Error {
        if other.hint.is_some() {
            self.hint = other.hint.clone();
        }
        self
    }

    /// What failed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How to fix it, if we know.
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// An I/O error on `path` while doing `what` (`"cannot read"`), with a
    /// hint for the errors a user can fix (the library's wording, shared).
    pub fn io(what: &str, path: &Path, err: &io::Error) -> Error {
        qemu_shim_interpfile::Error::io(what, path, err).into()
    }
}

/// An I/O error's reason without Rust's ` (os error N)` suffix.
pub use qemu_shim_interpfile::io_reason;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, " (hint: {h})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// binfmt_misc errors carry their message and advice apart: the advice
/// becomes the hint, printed in the one format.
impl From<qemu_shim_registry::binfmt::Error> for Error {
    fn from(e: qemu_shim_registry::binfmt::Error) -> Error {
        let out = Error::new(e.message());
        match e.hint_text() {
            Some(h) => out.hint(h),
            None => out,
        }
    }
}

/// The interpreter-file library's errors read the same way.
impl From<qemu_shim_interpfile::Error> for Error {
    fn from(e: qemu_shim_interpfile::Error) -> Error {
        let out = Error::new(e.message());
        match e.hint_text() {
            Some(h) => out.hint(h),
            None => out,
        }
    }
}

/// Result with the CLI's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `s` with its control characters escaped (`\n`, `\u{1b}`): what a
/// message quotes (a name from a file, a path) can hold any character, and
/// the message stays one line without terminal controls.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_with_hint() {
        let e = Error::new("cannot do it")
            .hint("try harder")
            .context("install");
        assert_eq!(e.to_string(), "install: cannot do it (hint: try harder)");
    }

    #[test]
    fn io_error_drops_os_error_suffix_and_hints_root() {
        let err = io::Error::from_raw_os_error(nix::libc::EACCES);
        let e = Error::io("cannot write", Path::new("/x"), &err);
        assert_eq!(
            e.to_string(),
            "cannot write /x: permission denied (hint: run as root)"
        );
    }

    #[test]
    fn printable_escapes_control_characters_only() {
        assert_eq!(printable("a\nb\tc\u{1b}[2J d/é"), "a\\nb\\tc\\u{1b}[2J d/é");
    }
}
