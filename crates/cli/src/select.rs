//! Turning the arch names on the command line into rows of the arch table.
//!
//! Users write qemu's names (`aarch64`), Debian's (`armhf`), docker/OCI
//! platform names (`linux/arm64`) or our entry names (`qemu-shim-s390x`), in
//! any case; each resolves through [`arch::lookup`], the arch table's one
//! list of spellings. Comma lists and `all` are read here. The same arch
//! named twice counts once. The result keeps the table's order, so output
//! and the interpreter's table do not depend on how the user spelled things.

use qemu_shim_registry::arch::{self, Arch, ARCHES};
use qemu_shim_registry::probe;

use crate::error::{Error, Result};

/// The arches this machine runs natively, measured by the registry's probe
/// (each arch's tiny program executed in a private binfmt_misc instance),
/// and the probe's note when it had to fall back to a weaker method.
pub fn native() -> Result<(Vec<&'static Arch>, Option<String>)> {
    let report = native_report()?;
    Ok((report.native(), report.note.clone()))
}

/// The probe's whole report, for callers that need to know how it probed
/// (`run`: whether a private instance could be made).
pub fn native_report() -> Result<probe::Report> {
    probe::probe().map_err(|e| {
        let err = Error::new(format!(
            "cannot tell which arches this machine runs natively: {e}"
        ));
        if e.host_not_native() {
            err.hint("use the qemu-shim built for this machine's arch")
        } else {
            err.hint("set TMPDIR to a directory that allows exec")
        }
    })
}

/// The arch names in `args` as typed: comma lists (`arm64,riscv64`) split,
/// blanks around them dropped. `None` when they name every arch: no names
/// at all, or `all` among them (tonistiigi/binfmt's spelling).
pub fn names(args: &[String]) -> Result<Option<Vec<String>>> {
    let mut out = Vec::new();
    for arg in args {
        let before = out.len();
        for n in arg.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if n.eq_ignore_ascii_case("all") {
                return Ok(None);
            }
            if n.contains(['*', '?']) {
                // tonistiigi/binfmt's `--uninstall qemu-*` (issue 18, item 7).
                let matched = globbed(n);
                if matched.is_empty() {
                    return Err(Error::new(format!("no arch matches '{n}'"))
                        .hint(format!("name arches, or all; {}", known_hint(&[]))));
                }
                if matched.len() == ARCHES.len() {
                    return Ok(None);
                }
                out.extend(matched.iter().map(|a| a.name.to_string()));
                continue;
            }
            out.push(n.to_string());
        }
        if out.len() == before {
            return Err(Error::new(format!("no arch named in '{arg}'"))
                .hint(format!("name arches, or all; {}", known_hint(&[]))));
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// The rows one of whose names `pattern` (`*`: any run of characters, `?`:
/// one; case ignored) matches: the arch's name, its Debian and platform
/// names, and its entry names as qemu-shim (`qemu-shim-s390x`) and
/// tonistiigi/binfmt (`qemu-s390x`) register them.
fn globbed(pattern: &str) -> Vec<&'static Arch> {
    let pattern = pattern.to_ascii_lowercase();
    ARCHES
        .iter()
        .filter(|a| {
            let own = [
                a.name.to_string(),
                format!("qemu-{}", a.name),
                format!("{}{}", arch::ENTRY_PREFIX, a.name),
            ];
            let others = a
                .debian
                .iter()
                .chain(a.platforms.iter())
                .map(|s| s.to_string());
            own.into_iter()
                .chain(others)
                .any(|n| glob_match(pattern.as_bytes(), n.as_bytes()))
        })
        .collect()
}

/// Whether `text` matches the shell-style `pattern` (`*`, `?`; no classes).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match (pattern.split_first(), text.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            glob_match(rest, text) || (!text.is_empty() && glob_match(pattern, &text[1..]))
        }
        (Some((b'?', rest)), Some((_, t))) => glob_match(rest, t),
        (Some((p, rest)), Some((c, t))) => p == c && glob_match(rest, t),
        _ => false,
    }
}

/// The rows named by `names`, in table order, without duplicates. `native`
/// (when the caller knows it) is left out of the hint an unknown name gets;
/// when `None`, it is probed then, on that error's path only.
pub fn resolve(names: &[String], native: Option<&[&'static Arch]>) -> Result<Vec<&'static Arch>> {
    let mut chosen: Vec<&'static Arch> = Vec::new();
    for name in names {
        let Some(a) = arch::lookup(name) else {
            return Err(match native {
                Some(n) => unknown(name, n),
                None => unknown(name, &native_for_hint()),
            });
        };
        if !chosen.iter().any(|c| std::ptr::eq(*c, a)) {
            chosen.push(a);
        }
    }
    Ok(in_table_order(chosen))
}

/// The rows named by `names`, refusing any the host runs natively: an entry
/// for the host's own arch would match the interpreter itself and every
/// native program, and each exec would loop until ELOOP.
pub fn resolve_foreign(names: &[String], native: &[&'static Arch]) -> Result<Vec<&'static Arch>> {
    let chosen = resolve(names, Some(native))?;
    if let Some(a) = chosen.iter().find(|a| is_in(a, native)) {
        return Err(Error::new(format!(
            "{} is native on this machine: the CPU runs it without an emulator",
            a.name
        ))
        .hint(format!(
            "an entry for it would send programs this CPU runs to an emulator; foreign arches here: {}",
            names_of(&foreign(native))
        )));
    }
    Ok(chosen)
}

/// Every row the host does not run natively, in table order.
pub fn foreign(native: &[&'static Arch]) -> Vec<&'static Arch> {
    ARCHES.iter().filter(|a| !is_in(a, native)).collect()
}

/// Whether `a` is one of `set` (rows are compared by identity: each lives
/// once in the static table).
pub fn is_in(a: &Arch, set: &[&'static Arch]) -> bool {
    set.iter().any(|s| std::ptr::eq(*s, a))
}

/// Comma-separated names of `arches`.
pub fn names_of(arches: &[&'static Arch]) -> String {
    let names: Vec<&str> = arches.iter().map(|a| a.name).collect();
    names.join(", ")
}

fn in_table_order(mut v: Vec<&'static Arch>) -> Vec<&'static Arch> {
    v.sort_by_key(|a| ARCHES.iter().position(|r| std::ptr::eq(r, *a)));
    v
}

/// The host's native arches for a hint: probed, or, if the probe cannot
/// run, the arch this program was built for.
fn native_for_hint() -> Vec<&'static Arch> {
    match probe::probe() {
        Ok(report) => report.native(),
        Err(_) => probe::host_arch().into_iter().collect(),
    }
}

/// An unknown arch name: the closest known spellings, and every arch this
/// machine could register (native ones left out: naming them is refused
/// anyway), sorted by name.
fn unknown(name: &str, native: &[&'static Arch]) -> Error {
    let mut message = format!("unknown arch '{name}'");
    let close = suggestions(name, native);
    if !close.is_empty() {
        message.push_str(&format!("; did you mean {}?", close.join(" or ")));
    }
    Error::new(message).hint(known_hint(native))
}

/// The hint listing the names install and uninstall take.
fn known_hint(native: &[&'static Arch]) -> String {
    let mut names: Vec<&str> = ARCHES
        .iter()
        .filter(|a| !is_in(a, native))
        .map(|a| a.name)
        .collect();
    names.sort_unstable();
    format!(
        "arches: {}; also Debian names (armhf, ppc64el), platform names (linux/arm64, arm64), entry names (qemu-shim-s390x), comma lists and all",
        names.join(", ")
    )
}

/// Up to three spellings of foreign arches close to `typed`: within two
/// edits (a swap of neighbours counts one), or starting with it; only the
/// closest of those. Each arch is suggested once, by its closest spelling.
fn suggestions(typed: &str, native: &[&'static Arch]) -> Vec<&'static str> {
    let typed = typed.to_ascii_lowercase();
    let typed = typed
        .strip_prefix(arch::ENTRY_PREFIX)
        .unwrap_or(&typed)
        .to_string();
    let mut scored: Vec<(usize, &'static str, &'static Arch)> = Vec::new();
    for a in ARCHES.iter().filter(|a| !is_in(a, native)) {
        let spellings = std::iter::once(a.name)
            .chain(a.debian.iter().copied())
            .chain(a.platforms.iter().filter_map(|p| p.strip_prefix("linux/")));
        let best = spellings
            .filter_map(|s| {
                let d = distance(&typed, s);
                let near = d <= 2 && d < typed.len().max(s.len()) / 2 + 1;
                let prefix = typed.len() >= 3 && s.starts_with(typed.as_str());
                (near || prefix).then_some((d, s))
            })
            .min();
        if let Some((d, s)) = best {
            scored.push((d, s, a));
        }
    }
    // Only the closest: `arm46` is one swap from arm64, two edits from arm.
    let closest = scored.iter().map(|&(d, _, _)| d).min();
    scored.retain(|&(d, _, _)| Some(d) == closest);
    scored.sort_by_key(|&(d, s, _)| (d, s));
    scored.into_iter().take(3).map(|(_, s, _)| s).collect()
}

/// Edit distance between `a` and `b`: insertions, deletions, substitutions
/// and swaps of neighbours each count one (optimal string alignment).
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn tonistiigi_globs_name_every_arch_or_the_ones_they_match() {
        // `--uninstall qemu-*`: every arch, as `all`.
        assert_eq!(names(&s(&["qemu-*"])).unwrap(), None);
        assert_eq!(names(&s(&["*"])).unwrap(), None);
        assert_eq!(
            names(&s(&["qemu-mips64*"])).unwrap(),
            Some(s(&["mips64", "mips64el"]))
        );
        assert_eq!(names(&s(&["QEMU-S390?"])).unwrap(), Some(s(&["s390x"])));
        let e = names(&s(&["qemu-nothing*"])).unwrap_err();
        assert_eq!(e.message(), "no arch matches 'qemu-nothing*'");
        assert!(glob_match(b"a*c", b"abbc") && glob_match(b"a*", b"a"));
        assert!(!glob_match(b"a?c", b"ac") && !glob_match(b"a*d", b"abc"));
    }

    #[test]
    fn qemu_and_platform_names_resolve_to_the_same_row_once() {
        let got = resolve(
            &s(&[
                "aarch64",
                "linux/arm64",
                "linux/arm64/v8",
                "ARM64",
                "qemu-shim-aarch64",
            ]),
            Some(&[]),
        )
        .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "aarch64");
    }

    /// Every arch as docker and podman users write it (`--platform`, image
    /// manifests, `uname -m`) names exactly one row, and the expected one.
    #[test]
    fn docker_and_podman_arch_names_map_to_exactly_one_row() {
        let cases = [
            ("linux/arm64", "aarch64"),
            ("linux/arm64/v8", "aarch64"),
            ("arm64", "aarch64"),
            ("arm64/v8", "aarch64"),
            ("aarch64", "aarch64"),
            ("linux/arm/v7", "arm"),
            ("linux/arm/v6", "arm"),
            ("arm/v7", "arm"),
            ("arm", "arm"),
            ("linux/amd64", "x86_64"),
            ("amd64", "x86_64"),
            ("amd64/v2", "x86_64"),
            ("x86_64", "x86_64"),
            ("linux/386", "i386"),
            ("386", "i386"),
            ("i386", "i386"),
            ("linux/ppc64le", "ppc64le"),
            ("ppc64le", "ppc64le"),
            ("ppc64", "ppc64"),
            ("linux/s390x", "s390x"),
            ("s390x", "s390x"),
            ("linux/riscv64", "riscv64"),
            ("riscv64", "riscv64"),
            ("linux/mips64le", "mips64el"),
            ("mips64le", "mips64el"),
            ("mips64el", "mips64el"),
            ("mips64", "mips64"),
            ("mipsle", "mipsel"),
            ("mips", "mips"),
            ("loong64", "loongarch64"),
            ("linux/loong64", "loongarch64"),
        ];
        for (name, want) in cases {
            // Rows any spelling could mean: qemu name, platform name, or
            // platform name without `linux/`.
            let rows: Vec<&str> = ARCHES
                .iter()
                .filter(|a| {
                    a.name == name
                        || a.platforms
                            .iter()
                            .any(|p| *p == name || p.strip_prefix("linux/") == Some(name))
                })
                .map(|a| a.name)
                .collect();
            assert_eq!(rows, [want], "{name} names rows {rows:?}");
            assert_eq!(arch::lookup(name).map(|a| a.name), Some(want), "{name}");
        }
        assert!(arch::lookup("linux/vax").is_none());
        assert!(arch::lookup("v7").is_none());
    }

    #[test]
    fn result_is_in_table_order() {
        let names: Vec<String> = ARCHES.iter().rev().map(|a| a.name.to_string()).collect();
        let got = resolve(&names, Some(&[])).unwrap();
        let want: Vec<&str> = ARCHES.iter().map(|a| a.name).collect();
        assert_eq!(got.iter().map(|a| a.name).collect::<Vec<_>>(), want);
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let e = resolve(&s(&["aarch64", "vax"]), Some(&[])).unwrap_err();
        assert_eq!(e.message(), "unknown arch 'vax'");
        assert!(e.hint_text().unwrap().contains("aarch64"), "{e}");
    }

    /// Issue 18, item 3: a near miss gets the closest names, and the hint
    /// lists every arch the machine could register, sorted, its native ones
    /// left out.
    #[test]
    fn unknown_name_suggests_close_ones_and_lists_foreign_arches_sorted() {
        let x86 = arch::by_name("x86_64").unwrap();
        let i386 = arch::by_name("i386").unwrap();
        let native = [x86, i386];
        for (typed, want) in [
            ("arm46", "did you mean arm64?"),
            ("aarch46", "did you mean aarch64?"),
            ("ppc64e", "did you mean ppc64 or ppc64el?"),
            ("armhfx", "did you mean armhf?"),
            ("qemu-shim-s390", "did you mean s390x?"),
            ("riscv", "did you mean riscv32 or riscv64?"),
        ] {
            let e = resolve(&s(&[typed]), Some(&native)).unwrap_err();
            assert!(e.message().contains(want), "{typed}: {e}");
        }
        let e = resolve(&s(&["vax"]), Some(&native)).unwrap_err();
        assert!(!e.message().contains("did you mean"), "{e}");
        // A native arch is neither suggested nor listed.
        let e = resolve(&s(&["amd46"]), Some(&native)).unwrap_err();
        assert!(!e.message().contains("amd64"), "{e}");
        let hint = e.hint_text().unwrap();
        let list = hint
            .strip_prefix("arches: ")
            .and_then(|h| h.split(';').next())
            .unwrap();
        let listed: Vec<&str> = list.split(", ").collect();
        let mut sorted = listed.clone();
        sorted.sort_unstable();
        assert_eq!(listed, sorted);
        assert_eq!(listed.len(), ARCHES.len() - 2);
        assert!(
            !listed.contains(&"x86_64") && !listed.contains(&"i386"),
            "{hint}"
        );
        assert!(listed.contains(&"aarch64"), "{hint}");
    }

    /// Issue 18, item 3: the names people already use.
    #[test]
    fn debian_upper_case_entry_names_comma_lists_and_all_are_taken() {
        let got = names(&s(&[
            "arm64,riscv64",
            " armhf ",
            "PPC64EL,",
            "qemu-shim-s390x",
        ]))
        .unwrap()
        .unwrap();
        let rows = resolve(&got, Some(&[])).unwrap();
        let rows: Vec<&str> = rows.iter().map(|a| a.name).collect();
        assert_eq!(rows, ["arm", "ppc64le", "s390x", "aarch64", "riscv64"]);
        assert_eq!(names(&s(&["all"])).unwrap(), None);
        assert_eq!(names(&s(&["arm64,ALL"])).unwrap(), None);
        assert_eq!(names(&[]).unwrap(), None);
        let e = names(&s(&[","])).unwrap_err();
        assert_eq!(e.message(), "no arch named in ','");
    }

    #[test]
    fn distance_counts_a_swap_as_one_edit() {
        assert_eq!(distance("arm46", "arm64"), 1);
        assert_eq!(distance("s390", "s390x"), 1);
        assert_eq!(distance("vax", "sh4"), 3);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn native_arch_is_refused() {
        let a = arch::by_name("aarch64").unwrap();
        let e = resolve_foreign(&s(&["linux/arm64"]), &[a]).unwrap_err();
        assert!(e.message().contains("aarch64 is native"), "{e}");
        assert!(resolve_foreign(&s(&["aarch64"]), &[]).is_ok());
    }

    #[test]
    fn foreign_excludes_native_rows() {
        let a = arch::by_name("aarch64").unwrap();
        assert!(!foreign(&[a]).iter().any(|r| r.name == "aarch64"));
        assert_eq!(foreign(&[]).len(), ARCHES.len());
    }
}
