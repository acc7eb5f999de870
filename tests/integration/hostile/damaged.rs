//! Damaged program files: refused with one line and 126, never a crash,
//! through the kernel and with the interpreter started by hand.

use std::fs;
use std::path::Path;

use qemu_shim_suite::{busybox, sandbox_caps, set_mode, As, Scratch};

use super::{helper, parse_outcome, probe, Outcome};

/// A small deterministic generator (splitmix64): the same corpus on every
/// machine, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Whether the kernel hands `file` to an entry for `arch` (its magic and
/// mask match), so that the interpreter, not the kernel, judges it.
fn routed_to(arch: &str, file: &[u8]) -> bool {
    let a = qemu_shim_registry::arch::by_name(arch).expect("arch row");
    a.magic.iter().zip(a.mask).enumerate().all(|(i, (m, k))| {
        let b = file.get(a.offset + i).copied().unwrap_or(0);
        (b ^ m) & k == 0
    })
}

/// The corpus of damaged aarch64 programs, deterministic: `(name, bytes)`.
///
/// - `cut-NNN`: the first 128 bytes of Debian's arm64 busybox (its ELF
///   header and most of one program header), 1 to 8 random bytes
///   overwritten: a header without its program.
/// - `whole-NNN`: the complete `probe` program, 1 to 4 fields of its ELF or
///   program header set to random or boundary values: some stay runnable.
///
/// Only files the kernel still routes to the aarch64 entry are kept.
fn damaged_corpus() -> Vec<(String, Vec<u8>)> {
    let bb = fs::read(busybox("arm64")).expect("read busybox");
    let head = &bb[..128];
    let whole = probe();
    let mut rng = Rng(0xbad_e1f);
    let mut out = Vec::new();
    let mut n = 0;
    while out.len() < 300 {
        let mut f = head.to_vec();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(f.len());
            f[at] = rng.next() as u8;
        }
        if routed_to("aarch64", &f) {
            out.push((format!("cut-{n:03}"), f));
            n += 1;
        }
    }
    // Fields (offset, width) of the ELF header after e_machine, and of the
    // program header.
    const FIELDS: [(usize, usize); 17] = [
        (20, 4),
        (24, 8),
        (32, 8),
        (40, 8),
        (48, 4),
        (52, 2),
        (54, 2),
        (56, 2),
        (58, 2),
        (60, 2),
        (62, 2),
        (64, 4),
        (68, 4),
        (72, 8),
        (80, 8),
        (96, 8),
        (104, 8),
    ];
    let mut n = 0;
    while out.len() < 600 {
        let mut f = whole.clone();
        for _ in 0..1 + rng.below(4) {
            let (at, width) = FIELDS[rng.below(FIELDS.len())];
            let len = f.len() as u64;
            let v = match rng.below(4) {
                0 => rng.next(),
                1 => rng.next() & 0xff,
                2 => [0, 1, len - 1, len, len + 1, 0x1000, u64::MAX][rng.below(7)],
                _ => {
                    let old = u64::from_le_bytes(f[at..at + 8].try_into().unwrap());
                    old ^ (1 << rng.below(8 * width))
                }
            };
            f[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
        }
        if routed_to("aarch64", &f) && f != whole {
            out.push((format!("whole-{n:03}"), f));
            n += 1;
        }
    }
    out
}

/// How one corpus file ended, and what it printed.
#[derive(Debug)]
struct Ran {
    name: String,
    outcome: Outcome,
    stdout: String,
    stderr: String,
}

/// Reads the helper's `corpus` report for the files listed in `list`.
fn corpus_results(list: &Path, report: &Path) -> Vec<Ran> {
    let files = fs::read_to_string(list).expect("read corpus list");
    let report = fs::read_to_string(report).expect("read corpus report");
    let lines: Vec<&str> = report.lines().collect();
    let files: Vec<&str> = files.lines().collect();
    assert_eq!(
        lines.len(),
        files.len(),
        "corpus report incomplete:\n{report}"
    );
    files
        .iter()
        .zip(lines)
        .map(|(f, l)| Ran {
            name: Path::new(f)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            outcome: parse_outcome(l),
            stdout: fs::read_to_string(format!("{f}.out")).unwrap_or_default(),
            stderr: fs::read_to_string(format!("{f}.err")).unwrap_or_default(),
        })
        .collect()
}

/// Whether `r` is the interpreter's refusal: 126, nothing on stdout, one
/// stderr line `qemu-shim: PATH: …`.
fn refused(r: &Ran) -> bool {
    r.outcome == Outcome::Exit(126)
        && r.stdout.is_empty()
        && r.stderr.starts_with("qemu-shim: ")
        && r.stderr.ends_with('\n')
        && r.stderr.matches('\n').count() == 1
}

/// Counts of how the runs of one family ended: files, deaths by a signal,
/// of which the guest's own fault (qemu's `uncaught target signal` line),
/// and runs still going after 2 s.
fn tally(rs: &[Ran], prefix: &str) -> (usize, usize, usize, usize) {
    let of: Vec<&Ran> = rs.iter().filter(|r| r.name.starts_with(prefix)).collect();
    let dead = |r: &&&Ran| matches!(r.outcome, Outcome::Signal(_));
    (
        of.len(),
        of.iter().filter(dead).count(),
        of.iter()
            .filter(dead)
            .filter(|r| r.stderr.contains("uncaught target signal"))
            .count(),
        of.iter().filter(|r| r.outcome == Outcome::Timeout).count(),
    )
}

#[test]
fn damaged_programs_are_refused_with_one_line_and_never_crash() {
    let s = Scratch::new("damaged");
    let helper = helper(&s);
    let corpus = damaged_corpus();
    // One copy per way of running it: each run leaves FILE.out and
    // FILE.err beside the file.
    let ways = ["kernel", "by-hand", "direct"];
    for way in ways {
        fs::create_dir(s.join(way)).unwrap();
        let mut list = String::new();
        for (name, bytes) in &corpus {
            let p = s.join(&format!("{way}/{name}"));
            fs::write(&p, bytes).unwrap();
            set_mode(&p, 0o755);
            list += &format!("{}\n", p.display());
        }
        fs::write(s.join(&format!("{way}.list")), list).unwrap();
    }
    sandbox_caps(
        As::Root,
        &s,
        &format!(
            r#"
install_shim aarch64 >/dev/null
{h} corpus "$S/kernel.list" >"$S/kernel.report"
{h} corpus "$S/by-hand.list" "$S/inst/qemu-shim-interp" >"$S/by-hand.report"
{h} corpus "$S/direct.list" "$EMUS/qemu-aarch64-static" >"$S/direct.report"
"#,
            h = helper.display()
        ),
    );
    let results = |way: &str| {
        corpus_results(
            &s.join(&format!("{way}.list")),
            &s.join(&format!("{way}.report")),
        )
    };

    // Through the kernel and by hand, every file the registry's checks
    // refuse is refused cleanly (126, one line); a file they accept runs,
    // and then only the program itself may die by a signal, which qemu
    // reports as the guest's fault: neither the interpreter nor the
    // emulator crashes.
    for way in ["kernel", "by-hand"] {
        let runs = results(way);
        let (mut ran, mut faults, mut looped) = (0, 0, 0);
        for (r, (_, bytes)) in runs.iter().zip(&corpus) {
            let valid = qemu_shim_registry::elf::validate(bytes, bytes.len() as u64).is_ok();
            if !valid {
                assert!(refused(r), "{way}: not refused cleanly: {r:?}");
                continue;
            }
            assert!(
                !r.stderr.starts_with("qemu-shim: "),
                "{way}: valid file refused: {r:?}"
            );
            match r.outcome {
                Outcome::Signal(_) => {
                    assert!(
                        r.stderr.contains("uncaught target signal"),
                        "{way}: died by a signal that is not the guest's fault: {r:?}"
                    );
                    faults += 1;
                }
                Outcome::Exit(_) => ran += 1,
                // The program may loop: its own doing, as natively.
                Outcome::Timeout => looped += 1,
            }
        }
        // The headers without their program are all refused.
        assert!(
            runs.iter()
                .filter(|r| r.name.starts_with("cut-"))
                .all(refused),
            "{way}: a cut header was not refused"
        );
        let (n, dead, _, _) = tally(&runs, "");
        eprintln!(
            "{way}: {n} damaged files: {} refused with 126 and one line, {ran} ran to an exit, \
             {dead} died by a signal ({faults} the guest's own fault), {looped} still running \
             after 2 s",
            runs.iter().filter(|r| refused(r)).count(),
        );
    }

    // The same files straight to qemu: documented, not asserted.
    let direct = results("direct");
    for prefix in ["cut-", "whole-"] {
        let (n, dead, guest, slow) = tally(&direct, prefix);
        eprintln!(
            "qemu-aarch64 run directly, {prefix}*: {n} files, {dead} died by a signal \
             ({} with no guest fault reported: qemu itself), {slow} still running after 2 s",
            dead - guest
        );
    }
}
