//! The kernel's binfmt_misc text formats as types: the register line, the entry file, binfmt.d lines.
//!
//! binfmt_misc speaks two formats (`fs/binfmt_misc.c`):
//!
//! - the **register line** written to `register`,
//!   `:name:type:offset:magic:mask:interpreter:flags`, modelled by
//!   [`RegisterLine`]. Its [`FromStr`] follows the kernel's parser
//!   (`create_entry`) rule for rule, so a line it accepts is one the kernel
//!   accepts, and its [`Display`](fmt::Display) writes a line that parses
//!   back to the same value;
//! - the **entry file** the kernel prints for each entry
//!   (`entry_status`), modelled by [`EntryFile`], parsed tolerantly: a line
//!   or flag letter this code does not know is kept, not an error.
//!
//! [`parse_binfmt_d`] reads systemd's `binfmt.d` files, which hold register
//! lines.
//!
//! The rules below were checked against kernel 6.18 by registering each
//! edge case in a private binfmt_misc instance (see
//! `tests/binfmt_io.rs`, which repeats that check on every test run, and
//! `tests/fixtures/entries/README.md`).

use std::fmt;
use std::str::FromStr;

/// Longest register line the kernel accepts, in bytes (`MAX_REGISTER_LENGTH`).
pub const MAX_LINE_LEN: usize = 1920;
/// Shortest register line the kernel accepts, in bytes (`create_entry`).
pub const MIN_LINE_LEN: usize = 11;
/// Bytes of a file the kernel matches magic against (`BINPRM_BUF_SIZE`,
/// kernel 5.1 and later; 128 before): `offset + magic.len()` may not exceed it.
pub const BINPRM_BUF_SIZE: usize = 256;
/// Longest entry name, in bytes: an entry is a file, so `NAME_MAX`.
pub const MAX_NAME_LEN: usize = 255;

/// The special flags of an entry: `P`, `O`, `C`, `F`.
///
/// `C` always includes `O`, as in the kernel: registering `C` sets both, so
/// the entry reads back `OC`. [`Flags::C`] therefore holds both bits, and no
/// value of this type means "`C` without `O`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u8);

impl Flags {
    /// No flags.
    pub const NONE: Flags = Flags(0);
    /// `P`, preserve argv\[0\]: the interpreter gets the program's own
    /// argv\[0\] after the program's path.
    pub const P: Flags = Flags(1);
    /// `O`, open the binary: the kernel passes the program as an open file
    /// descriptor in auxv `AT_EXECFD`.
    pub const O: Flags = Flags(2);
    /// `C`, credentials from the binary (setuid/setgid programs); includes `O`.
    pub const C: Flags = Flags(4 | 2);
    /// `F`, fix the binary: the interpreter file is opened at registration.
    pub const F: Flags = Flags(8);

    /// Whether every flag of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags of both.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The letters in the kernel's read-back order `POCF` (same as
    /// [`Display`](fmt::Display)); empty for no flags.
    pub fn letters(&self) -> String {
        self.to_string()
    }

    /// Parses flag letters as the kernel does (`check_special_flags`), from
    /// the start of `s`: returns the flags and how many bytes were letters.
    fn scan(s: &[u8]) -> (Flags, usize) {
        let mut flags = Flags::NONE;
        let mut n = 0;
        while let Some(f) = s.get(n).and_then(|&b| Flags::from_letter(b)) {
            flags = flags.union(f);
            n += 1;
        }
        (flags, n)
    }

    fn from_letter(b: u8) -> Option<Flags> {
        match b {
            b'P' => Some(Flags::P),
            b'O' => Some(Flags::O),
            b'C' => Some(Flags::C),
            b'F' => Some(Flags::F),
            _ => None,
        }
    }
}

impl fmt::Display for Flags {
    /// Writes the letters in the kernel's read-back order: `P`, `O`, `C`, `F`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The kernel prints O for its open-binary bit, then C for the
        // credentials bit; C's value holds both, so test the bits alone.
        for (bit, letter) in [(1, 'P'), (2, 'O'), (4, 'C'), (8, 'F')] {
            if self.0 & bit != 0 {
                fmt::Write::write_char(f, letter)?;
            }
        }
        Ok(())
    }
}

impl FromStr for Flags {
    type Err = ParseError;

    /// Parses flags as written in a register line: `P`, `O`, `C`, `F` in
    /// any order, repeats allowed, empty for none (as the kernel accepts).
    /// `C` implies `O`. Any other character is an error.
    fn from_str(s: &str) -> Result<Flags, ParseError> {
        let (flags, n) = Flags::scan(s.as_bytes());
        match s[n..].chars().next() {
            None => Ok(flags),
            Some(c) => Err(ParseError::new(
                ParseErrorKind::Flags,
                format!("unknown flag {c:?} in {s:?} (flags are P, O, C, F)"),
            )),
        }
    }
}

/// What an entry matches: bytes at an offset, or a file name extension.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Type `M`: the file's bytes at `offset` match `magic` under `mask`
    /// (`(byte ^ magic) & mask == 0` for each byte; no mask means all bits
    /// count). `offset + magic.len()` is at most [`BINPRM_BUF_SIZE`].
    Magic {
        offset: usize,
        magic: Vec<u8>,
        mask: Option<Vec<u8>>,
    },
    /// Type `E`: the file name's extension after its last `.` (without
    /// the dot) equals this string exactly.
    Extension(String),
}

/// A line written to binfmt_misc's `register` file.
///
/// [`FromStr`] accepts exactly the lines the kernel accepts (checked on
/// kernel 6.18), and decodes `\xHH` escapes as the kernel does. Two
/// deviations, both refusals of lines the kernel would take: a delimiter
/// that is not ASCII (the kernel splits on its first byte, leaving field
/// text that is not UTF-8), and the names `register` and `status`, which the
/// kernel refuses only later, with `EEXIST`. Names longer than
/// [`MAX_NAME_LEN`] bytes are refused as the kernel does (`ENAMETOOLONG`).
///
/// [`Display`](fmt::Display) writes the canonical form: delimiter `:`
/// (another one when a field holds a `:`), the offset in decimal, every
/// magic and mask byte as `\xHH`, the interpreter verbatim and the flags in
/// `POCF` order, without a trailing newline. `line.to_string().parse()`
/// gives `line` back for every line [`RegisterLine::validate`] accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RegisterLine {
    /// The entry's name: a file in the binfmt_misc directory.
    pub name: String,
    /// What the entry matches.
    pub kind: Kind,
    /// The interpreter's path (the kernel runs it with the program's path
    /// as an argument).
    pub interpreter: String,
    /// The special flags.
    pub flags: Flags,
}

/// Delimiters [`RegisterLine`]'s `Display` may use, in order of preference.
/// None of them is special to the kernel's parser: not `\`, `x` or a hex
/// digit (escapes), a digit or sign (offset), a flag letter, a newline or NUL.
const DELIMITERS: &[u8] = b":|#,;!@%^~=+&*<>?";

impl RegisterLine {
    /// The delimiter [`Display`](fmt::Display) uses: the first of `:`, `|`,
    /// `#`, … that occurs in no text field.
    fn delimiter(&self) -> u8 {
        let ext = match &self.kind {
            Kind::Extension(e) => e.as_bytes(),
            Kind::Magic { .. } => &[],
        };
        DELIMITERS
            .iter()
            .copied()
            .find(|d| {
                [self.name.as_bytes(), self.interpreter.as_bytes(), ext]
                    .iter()
                    .all(|field| !field.contains(d))
            })
            .unwrap_or(b':')
    }

    /// Checks that the kernel would accept this line as
    /// [`Display`](fmt::Display) writes it, and that it reads back as
    /// `self`. Use before registering a line built in code: the error says
    /// which field is wrong instead of the kernel's bare `EINVAL`.
    pub fn validate(&self) -> Result<(), ParseError> {
        let text = self.to_string();
        let back: RegisterLine = text.parse()?;
        if back != *self {
            // Only reachable through fields the kernel rewrites, e.g. a
            // magic field whose escapes are cut at a NUL; the parse above
            // catches every case known today.
            return Err(ParseError::new(
                ParseErrorKind::Syntax,
                format!("register line {text:?} would not read back as written"),
            ));
        }
        Ok(())
    }

    /// The entry file the kernel shows after this line is registered
    /// (enabled, flags in `POCF` order). Compare it with what
    /// [`EntryFile::parse`] read to tell whether an entry is this line.
    /// (An interpreter or extension holding a newline, which the kernel
    /// accepts, cannot be read back whole from the line-based entry file.)
    pub fn expected_entry(&self) -> EntryFile {
        let (offset, magic, mask, extension) = match &self.kind {
            Kind::Magic {
                offset,
                magic,
                mask,
            } => (Some(*offset), Some(magic.clone()), mask.clone(), None),
            Kind::Extension(e) => (None, None, None, Some(e.clone())),
        };
        EntryFile {
            enabled: true,
            interpreter: self.interpreter.clone(),
            flags: self.flags,
            raw_flags: self.flags.to_string(),
            offset,
            magic,
            mask,
            extension,
            unknown: Vec::new(),
        }
    }
}

impl fmt::Display for RegisterLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = char::from(self.delimiter());
        write!(f, "{d}{}{d}", self.name)?;
        match &self.kind {
            Kind::Magic {
                offset,
                magic,
                mask,
            } => {
                write!(f, "M{d}{offset}{d}")?;
                write_escaped(f, magic)?;
                write!(f, "{d}")?;
                if let Some(mask) = mask {
                    write_escaped(f, mask)?;
                }
            }
            Kind::Extension(ext) => write!(f, "E{d}{d}{ext}{d}")?,
        }
        write!(f, "{d}{}{d}{}", self.interpreter, self.flags)
    }
}

/// Writes every byte as `\xHH`, the escape the kernel decodes; the dual of
/// [`unescape`] for any bytes.
fn write_escaped(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "\\x{b:02x}"))
}

impl FromStr for RegisterLine {
    type Err = ParseError;

    /// Parses a register line by the kernel's rules (`create_entry`):
    ///
    /// - 11 to 1920 bytes; the first character is the delimiter (never a
    ///   flag letter or a newline: the kernel pads the line with the
    ///   delimiter and would read the padding as flags);
    /// - name: non-empty, no `/`, not `.` or `..` (and, here, not
    ///   `register` or `status`, at most 255 bytes);
    /// - type: exactly `M` or `E`;
    /// - `M`: offset in decimal (empty means 0; a leading `+` or `-` and one
    ///   trailing newline are accepted, as by the kernel's `kstrtoint`);
    ///   magic non-empty; mask empty (none) or as long as the magic after
    ///   decoding; `offset + magic length <= 256`. Every `\x` must be
    ///   followed by two hex digits; `\xHH` decodes to one byte, any other
    ///   backslash is kept literally (`string_unescape` with
    ///   `UNESCAPE_HEX`), and decoding stops at a NUL character;
    /// - `E`: offset and mask fields are ignored (any text); the extension is
    ///   taken literally, non-empty, without `/`;
    /// - interpreter: non-empty, taken literally;
    /// - flags: `P`, `O`, `C`, `F` in any order, then at most one newline,
    ///   then the end of the line.
    fn from_str(s: &str) -> Result<RegisterLine, ParseError> {
        parse_register_line(s.as_bytes())
    }
}

/// A C-like view of the kernel's copy of the line: the line, then eight
/// delimiters of padding (`create_entry` pads so that missing trailing
/// fields are found empty), then the end of the buffer.
struct Buf<'a> {
    line: &'a [u8],
    del: u8,
}

impl Buf<'_> {
    const PADDING: usize = 8;

    /// The byte at `i`; NUL past the padding (never reached in practice,
    /// every scan stops at the padding's delimiters first).
    fn at(&self, i: usize) -> u8 {
        match self.line.get(i) {
            Some(&b) => b,
            None if i < self.line.len() + Self::PADDING => self.del,
            None => 0,
        }
    }

    /// `strchr(p, del)`: the index of the next delimiter from `from`, or
    /// `None` when a NUL comes first.
    fn strchr(&self, from: usize) -> Option<usize> {
        (from..self.line.len() + Self::PADDING + 1).find_map(|i| match self.at(i) {
            b if b == self.del => Some(Some(i)),
            0 => Some(None),
            _ => None,
        })?
    }

    /// `scanarg`: the end of a field that may hold `\xHH` escapes (the
    /// index of its closing delimiter), or `None` when a `\x` is not
    /// followed by two hex digits. NUL does not end a field here.
    fn scanarg(&self, from: usize) -> Option<usize> {
        let mut i = from;
        loop {
            let c = self.at(i);
            i += 1;
            if c == self.del {
                return Some(i - 1);
            }
            if c == b'\\' && self.at(i) == b'x' {
                i += 1;
                for _ in 0..2 {
                    if !self.at(i).is_ascii_hexdigit() {
                        return None;
                    }
                    i += 1;
                }
            }
        }
    }

    /// The text of `from..to`, where the kernel's field may run into the
    /// padding (then it holds delimiters, which are not part of the line).
    fn field(&self, from: usize, to: usize) -> &[u8] {
        let end = to.min(self.line.len());
        self.line.get(from.min(end)..end).unwrap_or(&[])
    }
}

/// Decodes a magic or mask field as the kernel does
/// (`string_unescape_inplace(s, UNESCAPE_HEX)`): `\x` and one or two hex
/// digits give a byte; any other backslash is kept with the character after
/// it; a NUL character ends the field.
fn unescape(raw: &[u8]) -> Vec<u8> {
    let raw = raw.split(|&b| b == 0).next().unwrap_or(&[]);
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&c) = raw.get(i) {
        if c == b'\\' {
            if let Some(&next) = raw.get(i + 1) {
                i += 1;
                if next == b'x' {
                    if let Some(hi) = raw.get(i + 1).and_then(|&h| hex_value(h)) {
                        let mut value = hi;
                        i += 2;
                        if let Some(lo) = raw.get(i).and_then(|&h| hex_value(h)) {
                            value = (value << 4) | lo;
                            i += 1;
                        }
                        out.push(value);
                        continue;
                    }
                }
                out.push(b'\\');
                // Falls through to copy the character after the backslash.
            }
        }
        if let Some(&c) = raw.get(i) {
            out.push(c);
        }
        i += 1;
    }
    out
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// The kernel's `kstrtoint(s, 10, ..)`: optional `-` (or `+`), decimal
/// digits, one optional trailing newline; `None` on anything else or when
/// the value does not fit an `int`.
fn kstrtoint(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        // kstrtoll handles '-' and hands the rest to _kstrtoull, which does
        // not take a sign; kstrtoull (the positive path) skips one '+'.
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, s),
    };
    let digits = digits.strip_suffix(b"\n").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut value: i64 = 0;
    for d in digits {
        value = value.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
        if value > i64::from(i32::MAX) + 1 {
            return None;
        }
    }
    let value = if negative { -value } else { value };
    i32::try_from(value).ok().map(i64::from)
}

fn utf8(bytes: &[u8], what: &str) -> Result<String, ParseError> {
    // Fields are split at an ASCII delimiter, so text that came from a
    // `&str` is always valid UTF-8; keep the check rather than assume it.
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ParseError::new(ParseErrorKind::Syntax, format!("{what} is not UTF-8")))
}

/// Parses a register line as the kernel does (`create_entry` in
/// fs/binfmt_misc.c): the line's length and delimiter, then each field in
/// turn ([`Fields`]).
fn parse_register_line(line: &[u8]) -> Result<RegisterLine, ParseError> {
    check_length(line)?;
    let mut f = Fields {
        b: Buf {
            line,
            del: delimiter(line)?,
        },
        p: 1,
    };
    let name = f.name()?;
    let kind = if f.magic_type()? {
        f.magic()?
    } else {
        f.extension()?
    };
    let interpreter = f.interpreter()?;
    let flags = f.flags()?;
    Ok(RegisterLine {
        name,
        kind,
        interpreter,
        flags,
    })
}

/// An error of `kind` saying `message`.
fn fail<T>(kind: ParseErrorKind, message: String) -> Result<T, ParseError> {
    Err(ParseError::new(kind, message))
}

/// The kernel's bounds on a register line's length.
fn check_length(line: &[u8]) -> Result<(), ParseError> {
    if line.len() < MIN_LINE_LEN {
        return fail(
            ParseErrorKind::Length,
            format!(
                "register line is {} bytes, shorter than the kernel's minimum of {MIN_LINE_LEN}",
                line.len()
            ),
        );
    }
    if line.len() > MAX_LINE_LEN {
        return fail(
            ParseErrorKind::Length,
            format!(
                "register line is {} bytes, longer than the kernel's maximum of {MAX_LINE_LEN}",
                line.len()
            ),
        );
    }
    Ok(())
}

/// The line's delimiter, its first character (the line is not empty).
fn delimiter(line: &[u8]) -> Result<u8, ParseError> {
    let del = line[0];
    if !del.is_ascii() {
        return fail(
            ParseErrorKind::Delimiter,
            "register line's delimiter (its first character) is not ASCII".into(),
        );
    }
    if matches!(del, b'P' | b'O' | b'C' | b'F') {
        // The flag scan would run on into the padding; newer kernels
        // refuse these delimiters up front, older ones fail later.
        return fail(
            ParseErrorKind::Delimiter,
            format!(
                "delimiter {:?} is a flag letter, which the kernel never accepts",
                char::from(del)
            ),
        );
    }
    Ok(del)
}

/// The fields of a register line, read in the kernel's order: each step
/// reads the field at `p` and moves past its closing delimiter, or says
/// what is wrong with it.
struct Fields<'a> {
    b: Buf<'a>,
    p: usize,
}

impl Fields<'_> {
    /// The delimiter, for messages.
    fn dname(&self) -> char {
        char::from(self.b.del)
    }

    /// The index of the delimiter closing the field at `p` (`strchr`); a
    /// field without one is `kind`'s error: "`what` has no closing
    /// delimiter …`more`".
    fn closing(&self, kind: ParseErrorKind, what: &str, more: &str) -> Result<usize, ParseError> {
        match self.b.strchr(self.p) {
            Some(end) => Ok(end),
            None => fail(
                kind,
                format!("{what} has no closing delimiter {:?}{more}", self.dname()),
            ),
        }
    }

    /// The index of the delimiter closing a field that may hold `\xHH`
    /// escapes (`scanarg`); a bad escape is `kind`'s error.
    fn closing_escaped(&self, kind: ParseErrorKind, what: &str) -> Result<usize, ParseError> {
        match self.b.scanarg(self.p) {
            Some(end) => Ok(end),
            None => fail(
                kind,
                format!("{what} has a \\x escape without two hex digits"),
            ),
        }
    }

    /// The entry's name: a file name of binfmt_misc's directory.
    fn name(&mut self) -> Result<String, ParseError> {
        use ParseErrorKind as K;
        let end = self.closing(K::Name, "name", " (or holds a NUL)")?;
        let name = self.b.field(self.p, end);
        if name.is_empty() {
            return fail(K::Name, "name is empty".into());
        }
        if name == b"." || name == b".." || name.contains(&b'/') {
            return fail(
                K::Name,
                format!(
                    "name {:?} is not a file name (no '/', not '.' or '..')",
                    String::from_utf8_lossy(name)
                ),
            );
        }
        if name == b"register" || name == b"status" {
            return fail(
                K::Name,
                format!(
                    "name {:?} is taken by binfmt_misc's own file",
                    String::from_utf8_lossy(name)
                ),
            );
        }
        if name.len() > MAX_NAME_LEN {
            return fail(
                K::Name,
                format!("name is {} bytes, longer than {MAX_NAME_LEN}", name.len()),
            );
        }
        let name = utf8(name, "name")?;
        self.p = end + 1;
        Ok(name)
    }

    /// The type: `M` (magic, true) or `E` (extension, false).
    fn magic_type(&mut self) -> Result<bool, ParseError> {
        let magic = match self.b.at(self.p) {
            b'M' => true,
            b'E' => false,
            other => {
                return fail(
                    ParseErrorKind::Type,
                    format!(
                        "type {:?} is neither M (magic) nor E (extension)",
                        char::from(other)
                    ),
                )
            }
        };
        if self.b.at(self.p + 1) != self.b.del {
            return fail(
                ParseErrorKind::Type,
                format!(
                    "type must be one character (M or E) followed by {:?}",
                    self.dname()
                ),
            );
        }
        self.p += 2;
        Ok(magic)
    }

    /// An `M` entry's offset, magic and mask.
    fn magic(&mut self) -> Result<Kind, ParseError> {
        use ParseErrorKind as K;
        let offset = self.offset()?;

        let end = self.closing_escaped(K::Magic, "magic")?;
        let raw = self.b.field(self.p, end);
        if raw.first().is_none_or(|&c| c == 0) {
            return fail(K::Magic, "magic is empty".into());
        }
        let magic = unescape(raw);
        self.p = end + 1;

        let end = self.closing_escaped(K::Mask, "mask")?;
        let mask = match self.b.field(self.p, end) {
            [] | [0, ..] => None,
            raw => Some(unescape(raw)),
        };
        self.p = end + 1;
        if let Some(mask) = &mask {
            if mask.len() != magic.len() {
                return fail(
                    K::Mask,
                    format!(
                        "mask is {} bytes but magic is {} (they must be the same length)",
                        mask.len(),
                        magic.len()
                    ),
                );
            }
        }
        if magic.len() > BINPRM_BUF_SIZE || BINPRM_BUF_SIZE - magic.len() < offset {
            return fail(
                K::Magic,
                format!(
                    "offset {offset} + magic length {} exceeds the {BINPRM_BUF_SIZE} bytes the kernel reads",
                    magic.len()
                ),
            );
        }
        Ok(Kind::Magic {
            offset,
            magic,
            mask,
        })
    }

    /// An `M` entry's offset: empty (0) or a non-negative decimal number.
    fn offset(&mut self) -> Result<usize, ParseError> {
        let end = self.closing(ParseErrorKind::Offset, "offset", "")?;
        let text = self.b.field(self.p, end);
        let offset = if text.is_empty() {
            0
        } else {
            match kstrtoint(text) {
                Some(v) if v >= 0 => v as usize,
                _ => {
                    return fail(
                        ParseErrorKind::Offset,
                        format!(
                            "offset {:?} is not a non-negative decimal number",
                            String::from_utf8_lossy(text)
                        ),
                    )
                }
            }
        };
        self.p = end + 1;
        Ok(offset)
    }

    /// An `E` entry's extension, between an offset field and a mask field
    /// the kernel skips unread.
    fn extension(&mut self) -> Result<Kind, ParseError> {
        use ParseErrorKind as K;
        self.p = self.closing(K::Offset, "offset field", "")? + 1;
        let end = self.closing(K::Extension, "extension", " (or holds a NUL)")?;
        let ext = self.b.field(self.p, end);
        if ext.is_empty() {
            return fail(K::Extension, "extension is empty".into());
        }
        if ext.contains(&b'/') {
            return fail(K::Extension, "extension contains '/'".into());
        }
        let ext = utf8(ext, "extension")?;
        self.p = end + 1;
        self.p = self.closing(K::Mask, "mask field", "")? + 1;
        Ok(Kind::Extension(ext))
    }

    /// The interpreter's path.
    fn interpreter(&mut self) -> Result<String, ParseError> {
        use ParseErrorKind as K;
        let end = self.closing(K::Interpreter, "interpreter", " (or holds a NUL)")?;
        let interpreter = self.b.field(self.p, end);
        if interpreter.is_empty() {
            return fail(K::Interpreter, "interpreter is empty".into());
        }
        let interpreter = utf8(interpreter, "interpreter")?;
        self.p = end + 1;
        Ok(interpreter)
    }

    /// The flags: letters, one optional newline, then the end of the line.
    /// A line that ended before the interpreter's delimiter has `p` past
    /// its end. The kernel scans into its padding too: with a newline as
    /// the delimiter, the padding reads as the optional newline, and no
    /// line can end where it must.
    fn flags(&mut self) -> Result<Flags, ParseError> {
        use ParseErrorKind as K;
        let mut flags = Flags::NONE;
        while let Some(f) = Flags::from_letter(self.b.at(self.p)) {
            flags = flags.union(f);
            self.p += 1;
        }
        if self.b.at(self.p) == b'\n' {
            self.p += 1;
        }
        let line = self.b.line;
        if self.p == line.len() {
            return Ok(flags);
        }
        if self.b.del == b'\n' {
            // The padding's first newline is taken as the optional one.
            return fail(
                K::Delimiter,
                "a newline delimiter is never accepted by the kernel".into(),
            );
        }
        if self.p > line.len() {
            return fail(
                K::Interpreter,
                format!(
                    "line ends without the delimiter {:?} after the interpreter",
                    self.dname()
                ),
            );
        }
        fail(
            K::Flags,
            format!(
                "unexpected {:?} after the flags (flags are P, O, C, F)",
                String::from_utf8_lossy(&line[self.p..])
            ),
        )
    }
}

/// Why a register line, flag string or entry file was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    kind: ParseErrorKind,
    message: String,
}

/// Which part of the text was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The register line is shorter than 11 or longer than 1920 bytes.
    Length,
    /// The delimiter (first character) is not ASCII.
    Delimiter,
    /// The name field.
    Name,
    /// The type field (`M` or `E`).
    Type,
    /// The offset field.
    Offset,
    /// The magic field, or magic too long for its offset.
    Magic,
    /// The mask field.
    Mask,
    /// The extension field of an `E` entry.
    Extension,
    /// The interpreter field.
    Interpreter,
    /// The flags field, or text after it.
    Flags,
    /// Text that is not UTF-8, or a line that does not read back as written.
    Syntax,
    /// An entry file (what the kernel prints for an entry) is malformed.
    Entry,
}

impl ParseError {
    fn new(kind: ParseErrorKind, message: String) -> ParseError {
        ParseError { kind, message }
    }

    /// Which part of the text was wrong.
    pub fn kind(&self) -> ParseErrorKind {
        self.kind
    }

    /// The same error with `context` (e.g. `line 3`) in front of its message.
    fn context(self, context: &str) -> ParseError {
        ParseError {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// An entry as the kernel prints it (`/proc/sys/fs/binfmt_misc/<name>`):
///
/// ```text
/// enabled
/// interpreter /usr/libexec/qemu-shim-interp
/// flags: PF
/// offset 0
/// magic 7f454c460201010000000000000000000200b700
/// mask ffffffffffffff00fffffffffffffffffeffffff
/// ```
///
/// or, for an extension entry, `extension .ext` instead of the last three
/// lines. Parsing is tolerant of what later kernels may add: an unknown
/// line is kept in `unknown`, an unknown flag letter in `raw_flags`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryFile {
    /// `enabled` or `disabled` (the entry's own switch; the whole table also
    /// has one, the `status` file).
    pub enabled: bool,
    /// The interpreter's path as registered.
    pub interpreter: String,
    /// The flags this code knows (`P`, `O`, `C`, `F`).
    pub flags: Flags,
    /// The flag letters exactly as printed, including unknown ones.
    pub raw_flags: String,
    /// Offset of the magic (magic entries).
    pub offset: Option<usize>,
    /// The magic bytes (magic entries).
    pub magic: Option<Vec<u8>>,
    /// The mask (magic entries registered with one).
    pub mask: Option<Vec<u8>>,
    /// The extension without its dot (extension entries).
    pub extension: Option<String>,
    /// Lines this code does not know, verbatim.
    pub unknown: Vec<String>,
}

impl EntryFile {
    /// Parses an entry file. The first line must be `enabled` or
    /// `disabled` and an `interpreter` line must be present; known lines
    /// with malformed values (an offset that is not a number, magic that is
    /// not hex) are errors; anything else unknown is kept.
    pub fn parse(text: &str) -> Result<EntryFile, ParseError> {
        let bad = |msg: String| Err(ParseError::new(ParseErrorKind::Entry, msg));
        let mut lines = text.lines();
        let enabled = match lines.next() {
            Some("enabled") => true,
            Some("disabled") => false,
            first => {
                return bad(format!(
                    "entry file starts with {:?}, not \"enabled\" or \"disabled\"",
                    first.unwrap_or("")
                ))
            }
        };
        let mut entry = EntryFile {
            enabled,
            interpreter: String::new(),
            flags: Flags::NONE,
            raw_flags: String::new(),
            offset: None,
            magic: None,
            mask: None,
            extension: None,
            unknown: Vec::new(),
        };
        let mut have_interpreter = false;
        for line in lines {
            if let Some(path) = line.strip_prefix("interpreter ") {
                entry.interpreter = path.to_owned();
                have_interpreter = true;
            } else if let Some(letters) = line.strip_prefix("flags:") {
                // The kernel prints "flags: " then the letters (none for no
                // flags); accept a missing space too.
                let letters = letters.strip_prefix(' ').unwrap_or(letters);
                entry.raw_flags = letters.to_owned();
                entry.flags = letters
                    .bytes()
                    .filter_map(Flags::from_letter)
                    .fold(Flags::NONE, Flags::union);
            } else if let Some(n) = line.strip_prefix("offset ") {
                match n.parse() {
                    Ok(n) => entry.offset = Some(n),
                    Err(_) => return bad(format!("entry file has a bad offset line {line:?}")),
                }
            } else if let Some(hex) = line.strip_prefix("magic ") {
                match decode_hex(hex) {
                    Some(m) => entry.magic = Some(m),
                    None => return bad(format!("entry file has a bad magic line {line:?}")),
                }
            } else if let Some(hex) = line.strip_prefix("mask ") {
                match decode_hex(hex) {
                    Some(m) => entry.mask = Some(m),
                    None => return bad(format!("entry file has a bad mask line {line:?}")),
                }
            } else if let Some(ext) = line.strip_prefix("extension ") {
                entry.extension = Some(ext.strip_prefix('.').unwrap_or(ext).to_owned());
            } else if !line.is_empty() {
                entry.unknown.push(line.to_owned());
            }
        }
        if !have_interpreter {
            return bad("entry file has no \"interpreter\" line".into());
        }
        Ok(entry)
    }

    /// Whether the kernel would pick this entry's pattern for a file whose
    /// first bytes are `header`, by its rule for magic entries:
    /// `(byte ^ magic) & mask == 0` for each magic byte, all bits counting
    /// when there is no mask. Pass the file's first [`BINPRM_BUF_SIZE`]
    /// bytes (fewer if the file is shorter): like the kernel, bytes past the
    /// end of `header` compare as zero.
    ///
    /// An extension entry never matches here: the kernel matches it on the
    /// file's name, which a header does not carry. Whether the entry is
    /// enabled is not considered.
    pub fn matches(&self, header: &[u8]) -> bool {
        let (Some(magic), None) = (&self.magic, &self.extension) else {
            return false;
        };
        let offset = self.offset.unwrap_or(0);
        magic.iter().enumerate().all(|(i, &m)| {
            // The kernel reads the header into a zeroed 256-byte buffer.
            let b = offset
                .checked_add(i)
                .and_then(|at| header.get(at))
                .copied()
                .unwrap_or(0);
            let k = self
                .mask
                .as_ref()
                .and_then(|k| k.get(i))
                .copied()
                .unwrap_or(0xff);
            (b ^ m) & k == 0
        })
    }

    /// The register line that would recreate this entry under `name`, if
    /// the entry holds a magic or an extension.
    pub fn register_line(&self, name: &str) -> Option<RegisterLine> {
        let kind = match (&self.magic, &self.extension) {
            (Some(magic), None) => Kind::Magic {
                offset: self.offset.unwrap_or(0),
                magic: magic.clone(),
                mask: self.mask.clone(),
            },
            (None, Some(ext)) => Kind::Extension(ext.clone()),
            _ => return None,
        };
        Some(RegisterLine {
            name: name.to_owned(),
            kind,
            interpreter: self.interpreter.clone(),
            flags: self.flags,
        })
    }
}

/// Plain hex as the kernel's `bin2hex` prints it (lower case; upper case
/// accepted too).
fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let pairs = s.as_bytes().chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    pairs
        .map(|pair| Some(hex_value(pair[0])? << 4 | hex_value(pair[1])?))
        .collect()
}

/// Parses a systemd `binfmt.d` file: one register line per line; lines
/// whose first non-blank character is `#` or `;` are comments, blank lines
/// are skipped, and surrounding whitespace is removed, as systemd-binfmt
/// does. One result per non-comment line, in order; an error's message
/// starts with the line number (`line 3: …`).
pub fn parse_binfmt_d(text: &str) -> Vec<Result<RegisterLine, ParseError>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let line = line.trim();
            if line.is_empty() || line.starts_with(['#', ';']) {
                return None;
            }
            Some(
                line.parse::<RegisterLine>()
                    .map_err(|e| e.context(&format!("line {}", i + 1))),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Result<RegisterLine, ParseError> {
        text.parse()
    }

    fn magic(offset: usize, magic: &[u8], mask: Option<&[u8]>) -> Kind {
        Kind::Magic {
            offset,
            magic: magic.to_vec(),
            mask: mask.map(<[u8]>::to_vec),
        }
    }

    fn err_kind(text: &str) -> ParseErrorKind {
        match line(text) {
            Ok(l) => panic!("{text:?} was accepted as {l:?}"),
            Err(e) => e.kind(),
        }
    }

    fn fixture(name: &str) -> EntryFile {
        let path = format!(
            "{}/tests/fixtures/entries/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        EntryFile::parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    // --- Flags ---

    #[test]
    fn flags_display_in_kernel_order() {
        let all = Flags::F.union(Flags::C).union(Flags::P);
        assert_eq!(all.to_string(), "POCF");
        assert_eq!(Flags::P.union(Flags::F).to_string(), "PF");
        assert_eq!(Flags::F.letters(), "F");
        assert_eq!(Flags::NONE.to_string(), "");
    }

    #[test]
    fn flags_c_implies_o() {
        assert_eq!("CF".parse::<Flags>().unwrap().to_string(), "OCF");
        assert!(Flags::C.contains(Flags::O));
        assert!(!Flags::O.contains(Flags::C));
    }

    #[test]
    fn flags_parse_any_order_and_repeats() {
        assert_eq!("FCOP".parse::<Flags>().unwrap().to_string(), "POCF");
        assert_eq!("PP".parse::<Flags>().unwrap(), Flags::P);
        assert_eq!("".parse::<Flags>().unwrap(), Flags::NONE);
    }

    #[test]
    fn flags_reject_unknown_and_lower_case() {
        assert_eq!(
            "PX".parse::<Flags>().unwrap_err().kind(),
            ParseErrorKind::Flags
        );
        assert!("p".parse::<Flags>().is_err());
    }

    #[test]
    fn flags_contains_and_union() {
        let pf = Flags::P.union(Flags::F);
        assert!(pf.contains(Flags::P) && pf.contains(Flags::F) && pf.contains(Flags::NONE));
        assert!(!pf.contains(Flags::O));
        assert!(Flags::NONE.is_empty() && !pf.is_empty());
    }

    // --- RegisterLine: accepted lines ---

    #[test]
    fn parses_magic_line_with_mask() {
        let l = line(r":qemu-shim-aarch64:M:0:\x7fELF:\xff\xff\xff\xfe:/usr/bin/x:PF").unwrap();
        assert_eq!(l.name, "qemu-shim-aarch64");
        assert_eq!(l.kind, magic(0, b"\x7fELF", Some(b"\xff\xff\xff\xfe")));
        assert_eq!(l.interpreter, "/usr/bin/x");
        assert_eq!(l.flags, Flags::P.union(Flags::F));
    }

    #[test]
    fn empty_offset_is_zero_and_empty_mask_is_none() {
        let l = line(r":a:M::\x7fQQ::/bin/true:").unwrap();
        assert_eq!(l.kind, magic(0, b"\x7fQQ", None));
        assert_eq!(l.flags, Flags::NONE);
    }

    #[test]
    fn parses_extension_line_ignoring_offset_and_mask_fields() {
        let l = line(":a:E:junk:exe:junk:/bin/true:").unwrap();
        assert_eq!(l.kind, Kind::Extension("exe".into()));
    }

    #[test]
    fn extension_is_literal() {
        let l = line(r":a:E::\x41::/bin/true:").unwrap();
        assert_eq!(l.kind, Kind::Extension(r"\x41".into()));
    }

    #[test]
    fn accepts_one_trailing_newline() {
        assert!(line(":a:M::\\x7fQQ::/bin/true:F\n").is_ok());
        assert_eq!(
            err_kind(":a:M::\\x7fQQ::/bin/true:\n\n"),
            ParseErrorKind::Flags
        );
    }

    #[test]
    fn any_ascii_delimiter() {
        let l = line(r"|a:b|M||\x7fQQ||/bin/true|P").unwrap();
        assert_eq!(l.name, "a:b");
    }

    #[test]
    fn delimiter_x_still_allows_escapes() {
        // scanarg consumes `\x41` whole, so the `x` inside is not a delimiter.
        let l = line(r"xaxMxx\x41xx/bin/truex").unwrap();
        assert_eq!(l.kind, magic(0, b"A", None));
    }

    #[test]
    fn nul_delimiter() {
        let l = line("\0a\0M\0\0\\x41\0\0/bin/true\0").unwrap();
        assert_eq!(l.name, "a");
        assert_eq!(l.interpreter, "/bin/true");
    }

    #[test]
    fn offset_accepts_sign_leading_zeros_and_newline() {
        let off = |s: &str| match line(&format!(":a:M:{s}:\\x41::/bin/true:")).unwrap().kind {
            Kind::Magic { offset, .. } => offset,
            Kind::Extension(_) => unreachable!(),
        };
        assert_eq!(off("+5"), 5);
        assert_eq!(off("-0"), 0);
        assert_eq!(off("007"), 7);
        assert_eq!(off("5\n"), 5);
        assert_eq!(off("255"), 255);
    }

    #[test]
    fn unescape_hex_both_cases() {
        assert_eq!(
            line(r":a:M::\x3a\x3A::/bin/true:").unwrap().kind,
            magic(0, b"::", None)
        );
    }

    #[test]
    fn backslash_not_before_x_is_literal() {
        assert_eq!(
            line(r":a:M::\n\t::/bin/true:").unwrap().kind,
            magic(0, b"\\n\\t", None)
        );
        assert_eq!(
            line(r":a:M::\X41::/bin/true:").unwrap().kind,
            magic(0, b"\\X41", None)
        );
        assert_eq!(
            line(r":a:M::ab\::/bin/true:").unwrap().kind,
            magic(0, b"ab\\", None)
        );
    }

    #[test]
    fn double_backslash_is_not_an_escape() {
        // The kernel copies `\\` as two characters, then `x41` literally.
        assert_eq!(
            line(r":a:M::\\x41::/bin/true:").unwrap().kind,
            magic(0, b"\\\\x41", None)
        );
    }

    #[test]
    fn escaped_nul_is_a_byte() {
        assert_eq!(
            line(r":a:M::\x00::/bin/true:").unwrap().kind,
            magic(0, b"\0", None)
        );
    }

    #[test]
    fn literal_nul_ends_magic() {
        assert_eq!(
            line(":a:M::a\0b::/bin/true:").unwrap().kind,
            magic(0, b"a", None)
        );
    }

    #[test]
    fn mask_starting_with_nul_is_no_mask() {
        let l = line(":a:M::\\x41\\x42:\0zz:/bin/true:").unwrap();
        assert_eq!(l.kind, magic(0, b"AB", None));
    }

    #[test]
    fn mask_may_be_literal_text() {
        let l = line(r":a:M::\x41\x42:zz:/bin/true:").unwrap();
        assert_eq!(l.kind, magic(0, b"AB", Some(b"zz")));
    }

    #[test]
    fn magic_may_fill_the_buffer() {
        let text = format!(":a:M::{}::/bin/true:", "B".repeat(256));
        assert!(line(&text).is_ok());
    }

    #[test]
    fn names_the_kernel_allows() {
        for name in ["...", "a b", "a\nb", &"n".repeat(255)] {
            let l = line(&format!(":{name}:M::\\x41::/bin/true:")).unwrap();
            assert_eq!(l.name, name);
        }
    }

    #[test]
    fn interpreter_with_spaces_verbatim() {
        assert_eq!(
            line(r":a:M::\x41::/opt/x y/z:").unwrap().interpreter,
            "/opt/x y/z"
        );
    }

    #[test]
    fn shortest_line() {
        assert!(line(":a:E::e::/:").is_ok());
    }

    #[test]
    fn longest_line() {
        let head = r":a:M::\x41::";
        let interp = "/".repeat(MAX_LINE_LEN - head.len() - 1);
        let text = format!("{head}{interp}:");
        assert_eq!(text.len(), MAX_LINE_LEN);
        assert!(line(&text).is_ok());
        assert_eq!(
            err_kind(&format!("{head}/{interp}:")),
            ParseErrorKind::Length
        );
    }

    // --- RegisterLine: rejected lines ---

    #[test]
    fn rejects_short_line() {
        assert_eq!(err_kind(":a:E::e::/"), ParseErrorKind::Length);
    }

    #[test]
    fn rejects_bad_names() {
        for name in ["", ".", "..", "a/b", "register", "status", &"n".repeat(256)] {
            let text = format!(":{name}:M::\\x41::/bin/true:");
            assert_eq!(err_kind(&text), ParseErrorKind::Name, "{text:?}");
        }
    }

    #[test]
    fn rejects_nul_in_name() {
        assert_eq!(err_kind(":a\0b:M::\\x41::/bin/true:"), ParseErrorKind::Name);
    }

    #[test]
    fn rejects_non_ascii_delimiter() {
        assert_eq!(
            err_kind("éaéMéé\\x41éé/bin/trueé"),
            ParseErrorKind::Delimiter
        );
    }

    #[test]
    fn rejects_flag_letter_or_newline_delimiter() {
        // The kernel pads the line with the delimiter and reads that
        // padding as flags (or as the optional newline).
        for d in ["P", "O", "C", "F", "\n"] {
            let text = format!("{d}a{d}M{d}{d}\\x41{d}{d}/bin/true{d}");
            assert_eq!(err_kind(&text), ParseErrorKind::Delimiter, "{text:?}");
        }
    }

    #[test]
    fn rejects_bad_types() {
        for t in ["X", "MM", "m", ""] {
            let text = format!(":a:{t}::\\x41::/bin/true:");
            assert_eq!(err_kind(&text), ParseErrorKind::Type, "{text:?}");
        }
    }

    #[test]
    fn rejects_bad_offsets() {
        for off in [
            "-1",
            "+-1",
            "-+0",
            " 5",
            "5 ",
            "0x10",
            "2147483648",
            "99999999999999999999",
        ] {
            let text = format!(":a:M:{off}:\\x41::/bin/true:");
            assert_eq!(err_kind(&text), ParseErrorKind::Offset, "{text:?}");
        }
    }

    #[test]
    fn rejects_magic_past_the_buffer() {
        assert_eq!(
            err_kind(r":a:M:256:\x41::/bin/true:"),
            ParseErrorKind::Magic
        );
        assert_eq!(
            err_kind(r":a:M:2147483647:\x41::/bin/true:"),
            ParseErrorKind::Magic
        );
        let long = format!(":a:M:1:{}::/bin/true:", "B".repeat(256));
        assert_eq!(err_kind(&long), ParseErrorKind::Magic);
    }

    #[test]
    fn rejects_empty_magic() {
        assert_eq!(err_kind(":a:M::::/bin/true:"), ParseErrorKind::Magic);
        assert_eq!(err_kind(":a:M::\0ab::/bin/true:"), ParseErrorKind::Magic);
    }

    #[test]
    fn rejects_short_escapes() {
        for m in [r"\x", r"\x4", r"\x4g", r"\xzz", r"\\xzz"] {
            let text = format!(":a:M::{m}::/bin/true:");
            assert_eq!(err_kind(&text), ParseErrorKind::Magic, "{text:?}");
        }
        assert_eq!(err_kind(r":a:M::\x41:\x:/bin/true:"), ParseErrorKind::Mask);
    }

    #[test]
    fn rejects_mask_of_other_length() {
        assert_eq!(
            err_kind(r":a:M::\x41\x42:\xff:/bin/true:"),
            ParseErrorKind::Mask
        );
        assert_eq!(
            err_kind(r":a:M::\x41\x42:\xff\xff\xff:/bin/true:"),
            ParseErrorKind::Mask
        );
        // A NUL cuts the mask short.
        assert_eq!(
            err_kind(":a:M::\\x41\\x42:\\xff\0zz:/bin/true:"),
            ParseErrorKind::Mask
        );
    }

    #[test]
    fn rejects_bad_extensions() {
        assert_eq!(err_kind(":a:E::::/bin/true:"), ParseErrorKind::Extension);
        assert_eq!(err_kind(":a:E::a/b::/bin/true:"), ParseErrorKind::Extension);
        assert_eq!(
            err_kind(":a:E::e\0x::/bin/true:"),
            ParseErrorKind::Extension
        );
    }

    #[test]
    fn rejects_bad_interpreters() {
        assert_eq!(err_kind(":a:M::\\x41:::"), ParseErrorKind::Interpreter);
        assert_eq!(
            err_kind(":a:M::\\x41::/bin/tr\0ue:"),
            ParseErrorKind::Interpreter
        );
        assert_eq!(
            err_kind(":a:M::\\x41::/bin/true"),
            ParseErrorKind::Interpreter
        );
    }

    #[test]
    fn rejects_bad_flags() {
        for f in ["X", "p", " ", "P\nP", "P:"] {
            let text = format!(":a:M::\\x41::/bin/true:{f}");
            assert_eq!(err_kind(&text), ParseErrorKind::Flags, "{text:?}");
        }
    }

    #[test]
    fn rejects_extra_field() {
        // An extra delimiter leaves the interpreter field empty.
        assert_eq!(
            err_kind(":a:M::\\x41:::/bin/true:"),
            ParseErrorKind::Interpreter
        );
    }

    #[test]
    fn parse_error_display_is_one_line() {
        let e = line(":a:M::\\x41::/bin/true:X").unwrap_err();
        let text = e.to_string();
        assert!(!text.contains('\n') && text.contains("\"X\""), "{text}");
    }

    // --- RegisterLine: Display and round trips ---

    #[test]
    fn display_escapes_every_magic_byte() {
        let l = RegisterLine {
            name: "qemu-shim-aarch64".into(),
            kind: magic(0, b"\x7fEL", Some(b"\xff\xfe\x00")),
            interpreter: "/usr/lib/q i".into(),
            flags: Flags::F.union(Flags::P),
        };
        assert_eq!(
            l.to_string(),
            r":qemu-shim-aarch64:M:0:\x7f\x45\x4c:\xff\xfe\x00:/usr/lib/q i:PF"
        );
    }

    #[test]
    fn display_extension_and_no_mask() {
        let l = RegisterLine {
            name: "wine".into(),
            kind: Kind::Extension("exe".into()),
            interpreter: "/usr/bin/wine".into(),
            flags: Flags::NONE,
        };
        assert_eq!(l.to_string(), ":wine:E::exe::/usr/bin/wine:");
        let l = RegisterLine {
            kind: magic(3, b"A", None),
            ..l
        };
        assert_eq!(l.to_string(), r":wine:M:3:\x41::/usr/bin/wine:");
    }

    #[test]
    fn display_picks_another_delimiter_when_a_field_has_a_colon() {
        let l = RegisterLine {
            name: "a:b".into(),
            kind: magic(0, b"A", None),
            interpreter: "/x|y".into(),
            flags: Flags::NONE,
        };
        assert_eq!(l.to_string(), r"#a:b#M#0#\x41##/x|y#");
        assert_eq!(l.to_string().parse::<RegisterLine>().unwrap(), l);
    }

    #[test]
    fn round_trips() {
        let texts = [
            r":qemu-shim-aarch64:M:0:\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/lib/qemu-shim/interp:PF",
            r":a:M:255:\x00::/bin/true:POCF",
            r":a:M::\\x41:zzzzz:/bin/true:C",
            ":a:E:junk:.exe:junk:/bin/true:O",
            "|a:b|M||\\x41||/bin/true|P\n",
        ];
        for text in texts {
            let l = line(text).unwrap();
            let again = l.to_string();
            assert_eq!(line(&again).unwrap(), l, "{text:?} -> {again:?}");
            l.validate().unwrap();
        }
    }

    #[test]
    fn validate_rejects_what_the_kernel_would() {
        let good = line(r":a:M::\x41::/bin/true:").unwrap();
        let bad = [
            RegisterLine {
                name: "a/b".into(),
                ..good.clone()
            },
            RegisterLine {
                kind: magic(0, b"", None),
                ..good.clone()
            },
            RegisterLine {
                kind: magic(0, b"AB", Some(b"\xff")),
                ..good.clone()
            },
            RegisterLine {
                kind: magic(250, b"ABCDEFG", None),
                ..good.clone()
            },
            RegisterLine {
                interpreter: String::new(),
                ..good.clone()
            },
            // 240 bytes of magic and mask escape to 1920 characters.
            RegisterLine {
                kind: magic(0, &[0; 240], Some(&[0xff; 240])),
                ..good.clone()
            },
        ];
        for l in bad {
            assert!(l.validate().is_err(), "{l:?}");
        }
        good.validate().unwrap();
    }

    #[test]
    fn expected_entry_matches_the_kernels_read_back() {
        let l = line(r":flags-cf:M::\x03::/bin/true:CF").unwrap();
        assert_eq!(l.expected_entry(), fixture("flags-cf"));
        let l = line(":extension:E::exe::/usr/bin/wine:").unwrap();
        assert_eq!(l.expected_entry(), fixture("extension"));
    }

    // --- EntryFile ---

    #[test]
    fn entry_magic_with_mask() {
        let e = fixture("magic-mask-pf");
        assert!(e.enabled);
        assert_eq!(e.interpreter, "/bin/true");
        assert_eq!(e.flags, Flags::P.union(Flags::F));
        assert_eq!(e.raw_flags, "PF");
        assert_eq!(e.offset, Some(0));
        assert_eq!(e.magic.as_deref().map(<[u8]>::len), Some(20));
        assert_eq!(e.mask.as_deref().map(|m| m[16]), Some(0xfe));
        assert_eq!(e.extension, None);
        assert!(e.unknown.is_empty());
    }

    #[test]
    fn entry_without_mask_or_flags() {
        let e = fixture("magic-nomask");
        assert_eq!(e.magic.as_deref(), Some(&b"MZ"[..]));
        assert_eq!(e.mask, None);
        assert_eq!(e.flags, Flags::NONE);
        assert_eq!(e.raw_flags, "");
    }

    #[test]
    fn entry_with_offset() {
        let e = fixture("magic-offset");
        assert_eq!(e.offset, Some(8));
        assert_eq!(e.mask.as_deref(), Some(&b"\xff\x0f"[..]));
    }

    #[test]
    fn entry_extension() {
        let e = fixture("extension");
        assert_eq!(e.extension.as_deref(), Some("exe"));
        assert_eq!((e.offset, e.magic.as_ref()), (None, None));
        assert!(!e.matches(b"MZ"));
    }

    #[test]
    fn entry_disabled() {
        assert!(!fixture("disabled").enabled);
    }

    #[test]
    fn entry_flags_as_the_kernel_prints_them() {
        for (name, letters) in [
            ("flags-c", "OC"),
            ("flags-f", "F"),
            ("flags-cf", "OCF"),
            ("flags-fcop", "POCF"),
            ("flags-pp", "P"),
            ("interp-space", "O"),
        ] {
            let e = fixture(name);
            assert_eq!(e.raw_flags, letters, "{name}");
            assert_eq!(e.flags.to_string(), letters, "{name}");
        }
        assert_eq!(fixture("interp-space").interpreter, "/opt/my tools/interp");
    }

    #[test]
    fn entry_keeps_unknown_lines_and_flags() {
        let e = EntryFile::parse(
            "enabled\ninterpreter /x\nflags: PZF\noffset 0\nmagic 41\nnamespace 7\n",
        )
        .unwrap();
        assert_eq!(e.raw_flags, "PZF");
        assert_eq!(e.flags, Flags::P.union(Flags::F));
        assert_eq!(e.unknown, ["namespace 7"]);
    }

    #[test]
    fn entry_rejects_non_entries() {
        for text in [
            "",
            "enabled\n",
            "maybe\ninterpreter /x\n",
            "enabled\ninterpreter /x\noffset x\n",
            "enabled\ninterpreter /x\nmagic 4\n",
            "enabled\ninterpreter /x\nmask zz\n",
        ] {
            let e = EntryFile::parse(text).unwrap_err();
            assert_eq!(e.kind(), ParseErrorKind::Entry, "{text:?}");
        }
    }

    #[test]
    fn entry_matches_by_kernel_rule() {
        let e = fixture("magic-offset"); // offset 8, magic 42 43, mask ff 0f
        let mut header = [0u8; 16];
        header[8] = 0x42;
        header[9] = 0x43;
        assert!(e.matches(&header));
        header[9] = 0xf3; // only the masked-out high nibble differs
        assert!(e.matches(&header));
        header[9] = 0x44;
        assert!(!e.matches(&header));
    }

    #[test]
    fn entry_without_mask_compares_all_bits() {
        let e = fixture("magic-nomask");
        assert!(e.matches(b"MZ\x90\x00"));
        assert!(!e.matches(b"Mz"));
    }

    #[test]
    fn entry_matches_short_header_against_zeros() {
        // The kernel zero-fills its buffer past the end of a short file.
        let e = EntryFile::parse("enabled\ninterpreter /x\nflags: \noffset 2\nmagic 00\n").unwrap();
        assert!(e.matches(b"ab"));
        assert!(!e.matches(b"abc"));
    }

    #[test]
    fn entry_matches_real_aarch64_header() {
        let e = fixture("magic-mask-pf");
        let mut h = *b"\x7fELF\x02\x01\x01\x03\0\0\0\0\0\0\0\0\x03\x00\xb7\x00";
        assert!(e.matches(&h), "OSABI and e_type 3 are masked out");
        h[18] = 0x3e; // x86_64
        assert!(!e.matches(&h));
    }

    #[test]
    fn entry_register_line_recreates_the_entry() {
        let e = fixture("magic-offset");
        let l = e.register_line("magic-offset").unwrap();
        assert_eq!(
            l.to_string(),
            r":magic-offset:M:8:\x42\x43:\xff\x0f:/bin/true:P"
        );
        assert_eq!(l.expected_entry(), e);
    }

    // --- binfmt.d ---

    #[test]
    fn binfmt_d_skips_comments_and_blank_lines() {
        let text = "# comment\n; also\n\n   \n  :a:M::\\x41::/bin/true:F  \n:b:X::\\x41::/x:\n";
        let lines = parse_binfmt_d(text);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].as_ref().unwrap().name, "a");
        let e = lines[1].as_ref().unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::Type);
        assert!(e.to_string().starts_with("line 6: "), "{e}");
    }

    #[test]
    fn binfmt_d_debian_style_line() {
        let text = ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OCPF\n";
        let l = parse_binfmt_d(text).remove(0).unwrap();
        assert_eq!(l.flags.to_string(), "POCF");
        assert_eq!(l.interpreter, "/usr/libexec/qemu-binfmt/aarch64-binfmt-P");
    }
}
