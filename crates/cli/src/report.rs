//! What the reporting commands share: every command builds its report as
//! data (a `serde::Serialize` value); `--json` prints that value with
//! [`write_json`], and the text for people is rendered from the same value,
//! with [`Table`] for its columns. Nothing is parsed back out of text.

use std::io::Write;

use serde::Serialize;

use crate::error::{Error, Result};

/// Prints `value` as pretty JSON and a newline.
pub fn write_json(out: &mut dyn Write, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::new(format!("cannot write JSON: {e}")))?;
    let _ = writeln!(out, "{text}");
    Ok(())
}

/// Columns of text, each as wide as its widest cell, two spaces apart, no
/// trailing blanks.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `header`.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Writes every row, each line starting with `indent`.
    pub fn write(&self, out: &mut dyn Write, indent: &str) {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in &self.rows {
            let mut line = String::from(indent);
            for (i, cell) in r.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
    }
}

/// Sizes for people: bytes below 1 MiB, else MiB with one decimal.
pub fn human_size(n: u64) -> String {
    if n < 1 << 20 {
        format!("{n} bytes")
    } else {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    }
}

/// A size as people read it: bytes, KiB or MiB with one decimal (install's
/// and uninstall's reports; status's columns use [`human_size`]).
pub fn size_text(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else if bytes >= KIB {
        format!("{:.1} KiB", bytes as f64 / KIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_without_trailing_blanks() {
        let mut t = Table::new(&["A", "BB", "C"]);
        t.row(vec!["long".into(), "x".into(), "".into()]);
        t.row(vec!["é".into(), "yyy".into(), "z".into()]);
        let mut out = Vec::new();
        t.write(&mut out, "  ");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  A     BB   C\n  long  x\n  é     yyy  z\n"
        );
    }

    #[test]
    fn sizes_switch_to_mib_at_one_mib() {
        assert_eq!(human_size(1234), "1234 bytes");
        assert_eq!(human_size((1 << 20) - 1), "1048575 bytes");
        assert_eq!(human_size(336 << 20), "336.0 MiB");
    }

    #[test]
    fn json_is_pretty_and_ends_with_a_newline() {
        let mut out = Vec::new();
        write_json(&mut out, &serde_json::json!({"a": [1]})).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n  \"a\": [\n    1\n  ]\n}\n"
        );
    }
}
