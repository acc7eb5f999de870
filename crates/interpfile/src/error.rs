//! The library's error: one line of what failed, and a hint when one helps
//! (the CLI prints both as they are).

use std::fmt;
use std::io;
use std::path::Path;

/// A failure to build or read an interpreter file.
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

    /// What failed.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// How to fix it, if known.
    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// An I/O error on `path` while doing `what` (`"cannot read"`), with a
    /// hint for the errors a user can fix.
    pub fn io(what: &str, path: &Path, err: &io::Error) -> Error {
        let e = Error::new(format!("{what} {}: {}", path.display(), io_reason(err)));
        match err.kind() {
            io::ErrorKind::PermissionDenied => e.hint("run as root"),
            io::ErrorKind::ReadOnlyFilesystem => {
                e.hint("the file system is read-only; choose another directory")
            }
            _ => e,
        }
    }
}

/// An I/O error's reason without Rust's ` (os error N)` suffix, starting in
/// lower case so it reads as part of one sentence.
pub fn io_reason(err: &io::Error) -> String {
    let s = err.to_string();
    match s.find(" (os error ") {
        Some(i) => {
            let mut s = s[..i].to_string();
            if let Some(first) = s.get(..1) {
                let lower = first.to_lowercase();
                s.replace_range(..1, &lower);
            }
            s
        }
        None => s,
    }
}

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

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
