//! The interpreter's one line of output: built in a fixed buffer, written
//! with one `write(2)`, so concurrent failures never interleave mid-line.

use core::ffi::CStr;

use crate::sys::Errno;

/// Longest line written; longer input (a long path) is cut with "...".
pub const LINE_MAX: usize = 1024;

/// A bounded line buffer: pushes past the end are dropped and remembered.
#[derive(Clone)]
pub struct Line {
    buf: [u8; LINE_MAX],
    len: usize,
    truncated: bool,
}

impl Default for Line {
    fn default() -> Self {
        Line::new()
    }
}

impl Line {
    pub const fn new() -> Line {
        Line {
            buf: [0; LINE_MAX],
            len: 0,
            truncated: false,
        }
    }

    /// Appends as much of `bytes` as fits.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match self.buf.get_mut(self.len) {
                Some(slot) => {
                    *slot = b;
                    self.len += 1;
                }
                None => {
                    self.truncated = true;
                    return;
                }
            }
        }
    }

    /// Appends `n` in decimal.
    pub fn push_num(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            if let Some(d) = digits.get_mut(i) {
                *d = b'0' + (n % 10) as u8;
            }
            n /= 10;
            if n == 0 || i == 0 {
                break;
            }
        }
        self.push(digits.get(i..).unwrap_or(&[]));
    }

    /// Whether something did not fit.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// The bytes so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

/// One piece of a failure's reason.
#[derive(Debug, Clone, Copy)]
pub enum Part<'a> {
    Text(&'static str),
    Bytes(&'a [u8]),
    Num(u64),
    Errno(Errno),
}

/// Most pieces a reason has.
const MAX_PARTS: usize = 10;

/// Why the interpreter could not run the program: the exit code and what
/// to say, rendered only when written as `qemu-shim: PROGRAM: REASON (hint:
/// HINT)`. Kept as borrowed pieces so returning it costs a few words, not
/// a line buffer.
#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    code: i32,
    program: Option<&'a [u8]>,
    parts: [Part<'a>; MAX_PARTS],
    len: usize,
    hint: Option<&'static str>,
    /// Appended to the hint: a name from the static arch table.
    hint_tail: &'static str,
}

/// Room kept for the hint and the newline when the reason is long.
const TAIL: usize = 200;

impl<'a> Failure<'a> {
    /// Starts a failure with exit `code`, about `program` if known.
    pub fn new(code: i32, program: Option<&'a CStr>) -> Failure<'a> {
        Failure {
            code,
            program: program.map(CStr::to_bytes),
            parts: [Part::Text(""); MAX_PARTS],
            len: 0,
            hint: None,
            hint_tail: "",
        }
    }

    /// Appends a piece; pieces past the limit are dropped (a bug, caught by
    /// the tests, never a crash).
    pub fn part(mut self, p: Part<'a>) -> Failure<'a> {
        if let Some(slot) = self.parts.get_mut(self.len) {
            *slot = p;
            self.len += 1;
        }
        self
    }

    /// Appends text to the reason.
    pub fn text(self, s: &'static str) -> Failure<'a> {
        self.part(Part::Text(s))
    }

    /// Appends raw bytes (a path) to the reason.
    pub fn bytes(self, b: &'a [u8]) -> Failure<'a> {
        self.part(Part::Bytes(b))
    }

    /// Appends a number to the reason.
    pub fn num(self, n: u64) -> Failure<'a> {
        self.part(Part::Num(n))
    }

    /// Appends `: <description of errno>` to the reason.
    pub fn errno(self, e: Errno) -> Failure<'a> {
        self.part(Part::Errno(e))
    }

    /// Sets the hint shown after the reason.
    pub fn hint(mut self, hint: &'static str) -> Failure<'a> {
        self.hint = Some(hint);
        self
    }

    /// Sets the hint shown after the reason: `hint` then `tail` (an arch
    /// name, say; hints are static text, so a variable end comes apart).
    pub fn hint_then(mut self, hint: &'static str, tail: &'static str) -> Failure<'a> {
        self.hint = Some(hint);
        self.hint_tail = tail;
        self
    }

    /// The exit code.
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The complete line, newline included, at most [`LINE_MAX`] bytes: a
    /// long path or reason is cut with "..." before it can crowd out the
    /// hint.
    pub fn render(&self) -> Line {
        let mut line = Line::new();
        line.push(b"qemu-shim: ");
        if let Some(p) = self.program {
            push_bounded(&mut line, p, (LINE_MAX - TAIL) / 2);
            line.push(b": ");
        }
        for part in self.parts.get(..self.len).unwrap_or(&[]) {
            let room = (LINE_MAX - TAIL).saturating_sub(line.len);
            match *part {
                Part::Text(t) => push_bounded(&mut line, t.as_bytes(), room),
                Part::Bytes(b) => push_bounded(&mut line, b, room),
                Part::Num(n) => line.push_num(n),
                Part::Errno(e) => {
                    line.push(b": ");
                    match errno_text(e) {
                        Some(t) => line.push(t.as_bytes()),
                        None => {
                            line.push(b"errno ");
                            line.push_num(e.0 as u64);
                        }
                    }
                }
            }
        }
        if let Some(h) = self.hint {
            line.push(b" (hint: ");
            let room = (LINE_MAX - 2).saturating_sub(line.len);
            push_bounded(&mut line, h.as_bytes(), room);
            let room = (LINE_MAX - 2).saturating_sub(line.len);
            push_bounded(&mut line, self.hint_tail.as_bytes(), room);
            line.push(b")");
        }
        line.push(b"\n");
        line
    }
}

/// Appends at most `limit` bytes of `bytes`; a cut one ends with "...".
fn push_bounded(line: &mut Line, bytes: &[u8], limit: usize) {
    if bytes.len() > limit {
        line.push(bytes.get(..limit.saturating_sub(3)).unwrap_or(&[]));
        line.push(b"...");
    } else {
        line.push(bytes);
    }
}

fn errno_text(e: Errno) -> Option<&'static str> {
    Some(match e {
        Errno::EPERM => "operation not permitted",
        Errno::ENOENT => "no such file or directory",
        Errno::EIO => "input/output error",
        Errno::E2BIG => "argument list too long",
        Errno::ENOEXEC => "exec format error",
        Errno::EBADF => "bad file descriptor",
        Errno::ENOMEM => "out of memory",
        Errno::EACCES => "permission denied",
        Errno::ENOTDIR => "not a directory",
        Errno::EISDIR => "is a directory",
        Errno::ETXTBSY => "text file busy",
        Errno::EMFILE => "too many open files",
        Errno::ENAMETOOLONG => "file name too long",
        Errno::ELOOP => "too many levels of symbolic links",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_reads_program_reason_hint() {
        let f = Failure::new(127, Some(c"/bin/prog"))
            .text("no emulator for ")
            .text("aarch64")
            .hint("install it");
        assert_eq!(
            f.render().as_bytes(),
            b"qemu-shim: /bin/prog: no emulator for aarch64 (hint: install it)\n"
        );
        assert_eq!(f.code(), 127);
    }

    #[test]
    fn a_hint_can_end_with_a_name_from_the_table() {
        let f = Failure::new(127, Some(c"/p"))
            .text("x")
            .hint_then("populate /etc/qemu-binfmt/", "aarch64");
        assert_eq!(
            f.render().as_bytes(),
            b"qemu-shim: /p: x (hint: populate /etc/qemu-binfmt/aarch64)\n"
        );
    }

    #[test]
    fn errno_and_numbers_read_as_words() {
        let f = Failure::new(126, None)
            .text("x")
            .errno(Errno::EACCES)
            .text(" ")
            .num(40);
        assert_eq!(
            f.render().as_bytes(),
            b"qemu-shim: x: permission denied 40\n"
        );
        let f = Failure::new(126, None).text("y").errno(Errno(99));
        assert_eq!(f.render().as_bytes(), b"qemu-shim: y: errno 99\n");
    }

    #[test]
    fn a_huge_path_is_cut_and_the_hint_and_newline_survive() {
        let long = [b'a'; 5000];
        let f = Failure::new(126, None)
            .bytes(&long)
            .bytes(&long)
            .hint("HINT");
        let r = f.render();
        let m = r.as_bytes();
        assert!(m.len() <= LINE_MAX);
        assert!(
            m.ends_with(b"... (hint: HINT)\n"),
            "{:?}",
            core::str::from_utf8(m)
        );
        assert_eq!(m.iter().filter(|&&b| b == b'\n').count(), 1);
    }
}
