//! Turning the arch names on the command line into rows of the arch table.
//!
//! Users write qemu's names (`aarch64`) or docker/OCI platform names
//! (`linux/arm64`); both resolve through [`arch::lookup`]. The same arch
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

/// The rows named by `names`, in table order, without duplicates.
pub fn resolve(names: &[String]) -> Result<Vec<&'static Arch>> {
    let mut chosen: Vec<&'static Arch> = Vec::new();
    for name in names {
        let a = arch::lookup(name).ok_or_else(|| unknown(name))?;
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
    let chosen = resolve(names)?;
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

fn unknown(name: &str) -> Error {
    let all: Vec<&'static Arch> = ARCHES.iter().collect();
    Error::new(format!("unknown arch '{name}'")).hint(format!(
        "known arches: {} (or a platform name such as linux/arm64, arm64 or amd64)",
        names_of(&all)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn qemu_and_platform_names_resolve_to_the_same_row_once() {
        let got = resolve(&s(&["aarch64", "linux/arm64", "linux/arm64/v8"])).unwrap();
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
        let got = resolve(&names).unwrap();
        let want: Vec<&str> = ARCHES.iter().map(|a| a.name).collect();
        assert_eq!(got.iter().map(|a| a.name).collect::<Vec<_>>(), want);
    }

    #[test]
    fn unknown_name_is_an_error_naming_it() {
        let e = resolve(&s(&["aarch64", "vax"])).unwrap_err();
        assert!(e.message().contains("unknown arch 'vax'"), "{e}");
        assert!(e.hint_text().unwrap().contains("aarch64"), "{e}");
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
