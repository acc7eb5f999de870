//! setuid and setgid programs run with their own credentials, and the
//! caller's qemu and C library variables do not steer them.

use std::fs;

use qemu_shim_suite::{sandbox_full_map, set_mode, Scratch};

use super::{direct_qemu_aarch64, probe, probed, Probed};

/// Environment a user sets to steer a program it starts: qemu's own
/// variables and the C library's.
const STEERING_ENV: &str = "env -i PATH=/usr/bin:/bin KEEP=kept QEMU_STRACE=1 \
    QEMU_SET_ENV=INJECTED=1 QEMU_LD_PREFIX=/nonexistent QEMU_UNAME=9.9.9 \
    GCONV_PATH=/tmp/x LD_PRELOAD=/tmp/y.so";

#[test]
fn setuid_programs_run_with_their_credentials_and_ignore_the_callers_qemu_variables() {
    let s = Scratch::new("setuid");
    let p = probe();
    for (dir, mode) in [("suid", 0o4755), ("sgid", 0o2755), ("plain", 0o755)] {
        fs::create_dir(s.join(dir)).unwrap();
        let f = s.join(&format!("{dir}/probe"));
        fs::write(&f, &p).unwrap();
        set_mode(&f, mode);
    }
    let direct = direct_qemu_aarch64("OCF");
    sandbox_full_map(
        &s,
        &format!(
            r#"
entry=/proc/sys/fs/binfmt_misc/qemu-shim-aarch64
install() {{ install_shim aarch64 "$@"; }}
cap install install
cap flags grep flags: "$entry"
cap suid nobody {STEERING_ENV} "$S/suid/probe" a1
cap sgid nobody {STEERING_ENV} "$S/sgid/probe"
cap plain nobody {STEERING_ENV} "$S/plain/probe"
cap install-noprelink install --no-prelink
cap suid-noprelink nobody {STEERING_ENV} "$S/suid/probe" a1
cap install-nocred install --no-credentials
cap flags-nocred grep flags: "$entry"
cap suid-nocred nobody {STEERING_ENV} "$S/suid/probe"
cap install-nocarry install --no-carry
cap flags-nocarry grep flags: "$entry"
cap suid-nocarry nobody {STEERING_ENV} "$S/suid/probe"
"$CLI" uninstall --install-dir "$S/inst" >/dev/null
# For comparison, qemu registered directly with C.
printf '%s' '{direct}' >/proc/sys/fs/binfmt_misc/register
cap suid-direct nobody {STEERING_ENV} "$S/suid/probe"
"#
        ),
    );
    s.installed();
    assert_eq!(s.cap("flags").stdout, "flags: POCF\n");

    // setuid root: root's effective uid, the caller's real uid, AT_SECURE
    // seen by the program (so its own libc runs in secure mode), and none
    // of the caller's qemu variables honoured: no strace output, no
    // QEMU_SET_ENV, no QEMU_* handed on.
    let c = s.cap("suid");
    let p = probed(&c);
    assert_eq!(
        (p.get("euid"), p.get("uid"), p.get("secure")),
        (Some(0), Some(65534), Some(1)),
        "{c}"
    );
    let path = s.join("suid/probe").display().to_string();
    assert_eq!(p.argv, [path.as_str(), "a1"], "{c}");
    assert!(
        c.stderr.is_empty(),
        "QEMU_STRACE honoured for a setuid program:\n{c}"
    );
    assert!(
        p.env_named("QEMU_").is_empty() && p.env_named("INJECTED").is_empty(),
        "{c}"
    );
    // The C library's dangerous variables are gone too (removed by the
    // emulator's own libc, which sees AT_SECURE), the rest is kept.
    assert!(
        p.env_named("GCONV_PATH").is_empty() && p.env_named("LD_PRELOAD").is_empty(),
        "{c}"
    );
    assert!(p.env.contains("KEEP=kept"), "{c}");

    let c = s.cap("sgid");
    let p = probed(&c);
    assert_eq!(
        (p.get("euid"), p.get("egid"), p.get("secure")),
        (Some(65534), Some(0), Some(1)),
        "{c}"
    );
    assert!(
        c.stderr.is_empty() && p.env_named("QEMU_").is_empty(),
        "{c}"
    );

    // Not setuid: the environment is the caller's, qemu's variables work.
    let c = s.cap("plain");
    let p = probed(&c);
    assert_eq!(
        (p.get("euid"), p.get("secure")),
        (Some(65534), Some(0)),
        "{c}"
    );
    assert!(
        c.stderr.contains(" geteuid() = 65534"),
        "QEMU_STRACE lost:\n{c}"
    );
    for e in [
        "INJECTED=1",
        "QEMU_STRACE=1",
        "GCONV_PATH=/tmp/x",
        "LD_PRELOAD=/tmp/y.so",
    ] {
        assert!(p.env.contains(e), "{e} lost:\n{c}");
    }

    // --no-prelink: the image runs where the kernel put the file (at a
    // random address), the rest of the file is unmapped around it.
    assert_eq!(
        s.cap("install-noprelink").rc,
        0,
        "{}",
        s.cap("install-noprelink")
    );
    let c = s.cap("suid-noprelink");
    let p = probed(&c);
    assert_eq!(
        (p.get("euid"), p.get("uid"), p.get("secure")),
        (Some(0), Some(65534), Some(1)),
        "{c}"
    );
    assert_eq!(p.argv, [path.as_str(), "a1"], "{c}");
    assert!(
        c.stderr.is_empty() && p.env_named("QEMU_").is_empty(),
        "{c}"
    );

    // --no-credentials: the distros' behaviour, the caller's credentials.
    assert_eq!(s.cap("install-nocred").rc, 0, "{}", s.cap("install-nocred"));
    assert_eq!(s.cap("flags-nocred").stdout, "flags: POF\n");
    let c = s.cap("suid-nocred");
    let p = probed(&c);
    assert_eq!(
        (p.get("euid"), p.get("secure")),
        (Some(65534), Some(0)),
        "{c}"
    );
    assert!(c.stderr.contains(" geteuid() = 65534"), "{c}");

    // --no-carry: by path the interpreter cannot take AT_SECURE, so no C.
    assert_eq!(
        s.cap("install-nocarry").rc,
        0,
        "{}",
        s.cap("install-nocarry")
    );
    assert_eq!(s.cap("flags-nocarry").stdout, "flags: PF\n");
    let c = s.cap("suid-nocarry");
    let p = probed(&c);
    assert_eq!(
        (p.get("euid"), p.get("secure")),
        (Some(65534), Some(0)),
        "{c}"
    );

    // Documented, not asserted: qemu registered directly with C.
    let c = s.cap("suid-direct");
    let p = Probed::parse(&c.stdout);
    eprintln!(
        "qemu registered directly with OCF, setuid probe run by nobody: exit {}, euid {:?}, \
         strace lines {}, QEMU_SET_ENV honoured: {}",
        c.rc,
        p.get("euid"),
        c.stderr.lines().filter(|l| l.contains(" = ")).count(),
        p.env.contains("INJECTED=1")
    );
}

/// The script lines that start setuid-root arm64 busybox `cat FIFO` as
/// nobody (after `$1`, a wrapper command or nothing), wait until the
/// emulated `cat` has opened the fifo (so the emulator runs and the guest
/// blocks in read), copy its `/proc/PID/maps` and `/proc/PID/auxv` into
/// `$S/maps` and `$S/auxv` (read from outside: qemu fakes the guest's own
/// /proc/self/maps), then let it finish; its output, errors and status in
/// `$S/cat.*`. Also saves the installed interpreter's path.
const RUNNING_SETUID_SH: &str = r#"
sed -n 's/^interpreter //p' /proc/sys/fs/binfmt_misc/qemu-shim-aarch64 >"$S/interp-path"
mkfifo -m 0666 "$S/fifo"
$WRAP setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all -- \
	"$S/suid/busybox" cat "$S/fifo" >"$S/cat.out" 2>"$S/cat.err" &
pid=$!
# The writer, opened after the fork (so the child never holds the fifo
# before the guest opens it): the guest's open then returns, and read
# blocks until "done".
exec 4<>"$S/fifo"
end=$(($(date +%s) + 120))
until ls -l "/proc/$pid/fd" 2>/dev/null | grep -qF -- "-> $S/fifo"; do
	if [ "$(date +%s)" -gt "$end" ]; then
		echo "never saw the guest open the fifo" >"$S/timeout"
		kill -9 "$pid"
		break
	fi
	sleep 0.05
done
cat "/proc/$pid/maps" >"$S/maps" || true
cat "/proc/$pid/auxv" >"$S/auxv" || true
echo done >&4
exec 4>&-
rc=0
wait "$pid" || rc=$?
echo "$rc" >"$S/cat.rc"
"#;

/// A mapping of `/proc/PID/maps`: addresses, permissions, file offset,
/// path.
#[derive(Debug)]
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    offset: u64,
    path: String,
}

fn parse_maps(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (start, end) = f[0].split_once('-').unwrap();
            let hex = |s| u64::from_str_radix(s, 16).unwrap();
            Mapping {
                start: hex(start),
                end: hex(end),
                perms: f[1].to_owned(),
                offset: hex(f[2]),
                path: f.get(5..).map(|p| p.join(" ")).unwrap_or_default(),
            }
        })
        .collect()
}

/// The installed interpreter file as it sits in memory: its loadable
/// segments' address ranges, and each carried image's file range by arch.
struct InterpLayout {
    segments: Vec<(u64, u64)>,
    images: Vec<(String, (u64, u64))>,
}

fn interp_layout(path: &std::path::Path) -> InterpLayout {
    use goblin::container::{Container, Ctx, Endian};
    use goblin::elf::program_header::{ProgramHeader, PT_LOAD};
    use goblin::elf::section_header::SectionHeader;
    use goblin::elf::Elf;
    use goblin::strtab::Strtab;
    use qemu_shim_registry::dispatch::{Convention, Table, REGION_SIZE, SECTION};
    // Headers only: not `Elf::parse`, which reads the dynamic section and
    // symbols an installed (pre-relocated) file leaves as they were.
    let bytes = fs::read(path).unwrap();
    let h = Elf::parse_header(&bytes).unwrap();
    let ctx = Ctx::new(Container::Big, Endian::Little);
    let phdrs = ProgramHeader::parse(&bytes, h.e_phoff as usize, h.e_phnum as usize, ctx).unwrap();
    let shdrs = SectionHeader::parse(&bytes, h.e_shoff as usize, h.e_shnum as usize, ctx).unwrap();
    let names = &shdrs[usize::from(h.e_shstrndx)];
    let strtab =
        Strtab::parse(&bytes, names.sh_offset as usize, names.sh_size as usize, 0).unwrap();
    let loads: Vec<_> = phdrs.iter().filter(|h| h.p_type == PT_LOAD).collect();
    let base = loads.iter().find(|h| h.p_offset == 0).unwrap().p_vaddr;
    let table = shdrs
        .iter()
        .find(|s| strtab.get_at(s.sh_name) == Some(SECTION))
        .expect("table section");
    let at = table.sh_offset as usize;
    let table = Table::parse(&bytes[at..at + REGION_SIZE]).unwrap();
    let images = table
        .iter()
        .filter_map(|e| match e.convention {
            Convention::Carried(c) => {
                let addr = base + c.image;
                let seg = loads
                    .iter()
                    .find(|h| h.p_vaddr <= addr && addr < h.p_vaddr + h.p_memsz)
                    .unwrap();
                let off = seg.p_offset + (addr - seg.p_vaddr);
                // Not pre-relocated (span 0): up to its last segment's end.
                let len = match c.span {
                    0 => c.segments().iter().map(|s| s.offset + s.len).max().unwrap(),
                    span => span,
                };
                Some((e.arch.to_owned(), (off, off + len)))
            }
            _ => None,
        })
        .collect();
    InterpLayout {
        segments: loads
            .iter()
            .map(|h| (h.p_vaddr, h.p_vaddr + h.p_memsz))
            .collect(),
        images,
    }
}

/// Whether auxv (native words, as /proc/PID/auxv gives it) holds
/// AT_SECURE = 1.
fn auxv_secure(auxv: &[u8]) -> bool {
    auxv.chunks_exact(16)
        .map(|p| {
            (
                u64::from_ne_bytes(p[..8].try_into().unwrap()),
                u64::from_ne_bytes(p[8..].try_into().unwrap()),
            )
        })
        .any(|(k, v)| k == 23 && v == 1)
}

/// Runs [`RUNNING_SETUID_SH`] in `s` with two carried arches installed
/// (aarch64 and arm: another arch's image to be left behind), the program
/// started under `wrap` (a command prefix, or empty), `install` adding
/// options to the install. Returns the maps lines of the interpreter file,
/// and its layout.
fn running_setuid_maps(s: &Scratch, install: &str, wrap: &str) -> (Vec<Mapping>, InterpLayout) {
    running_maps(s, 0o4755, install, wrap)
}

/// [`running_setuid_maps`] with busybox's `mode`: setuid (AT_SECURE
/// expected) or not.
fn running_maps(s: &Scratch, mode: u32, install: &str, wrap: &str) -> (Vec<Mapping>, InterpLayout) {
    fs::create_dir(s.join("suid")).unwrap();
    let bb = s.join("suid/busybox");
    fs::copy(qemu_shim_suite::busybox("arm64"), &bb).unwrap();
    set_mode(&bb, mode);
    sandbox_full_map(
        s,
        &format!(
            "cap install install_shim aarch64 arm {install}\nWRAP='{wrap}'\n{RUNNING_SETUID_SH}"
        ),
    );
    s.installed();
    let read = |n: &str| fs::read_to_string(s.join(n)).unwrap_or_default();
    let maps = read("maps");
    assert_eq!(
        (
            read("cat.rc").trim(),
            read("cat.out").as_str(),
            read("cat.err").as_str()
        ),
        ("0", "done\n", ""),
        "the setuid cat did not run as it should; maps:\n{maps}"
    );
    assert_eq!(
        auxv_secure(&fs::read(s.join("auxv")).unwrap()),
        mode & 0o4000 != 0,
        "AT_SECURE not as the mode says, or never seen running; maps:\n{maps}"
    );
    let interp = std::path::PathBuf::from(read("interp-path").trim());
    let layout = interp_layout(&interp);
    let interp = interp.display().to_string();
    let mappings = parse_maps(&maps)
        .into_iter()
        .filter(|m| m.path == interp)
        .collect();
    (mappings, layout)
}

impl InterpLayout {
    /// The file range of `arch`'s carried image.
    fn image(&self, arch: &str) -> (u64, u64) {
        self.images
            .iter()
            .find(|(a, _)| a == arch)
            .unwrap_or_else(|| panic!("no carried {arch} image"))
            .1
    }

    /// Whether `m` lies at the file's fixed address (in one of its
    /// loadable segments).
    fn at_fixed_address(&self, m: &Mapping) -> bool {
        self.segments.iter().any(|&(a, b)| m.start < b && a < m.end)
    }
}

/// Whether mapping `m` maps part of the file range `(lo, hi)`.
fn maps_part_of(m: &Mapping, (lo, hi): (u64, u64)) -> bool {
    m.offset < hi && lo < m.offset + (m.end - m.start)
}

/// Issue 17: a running setuid emulated program keeps nothing of the
/// interpreter file but the emulator it runs (moved to a random address):
/// not the interpreter's code at the install's fixed address, not the
/// other arches' images.
#[test]
fn a_running_setuid_program_keeps_only_its_emulator_of_the_interpreter_file() {
    let s = Scratch::new("setuid-maps");
    let (file, layout) = running_setuid_maps(&s, "", "");
    let maps = fs::read_to_string(s.join("maps")).unwrap();
    only_the_running_image(&file, &layout, &maps);
    for m in &file {
        assert!(
            !layout.at_fixed_address(m),
            "the interpreter file is still mapped at its fixed address: {m:?}\n{maps}"
        );
    }
    eprintln!("maps of the running setuid program:\n{maps}");
}

/// The same with `--no-prelink`: the emulator runs where the kernel put
/// the file (a position-independent file, at a random address), and the
/// rest of the file around it is gone.
#[test]
fn without_prelink_a_running_setuid_program_keeps_only_its_emulator_too() {
    let s = Scratch::new("setuid-maps-noprelink");
    let (file, layout) = running_setuid_maps(&s, "--no-prelink", "");
    let maps = fs::read_to_string(s.join("maps")).unwrap();
    only_the_running_image(&file, &layout, &maps);
}

/// Asserts `file`, the mappings of the interpreter file, map only parts of
/// the aarch64 image, its code among them.
#[track_caller]
fn only_the_running_image(file: &[Mapping], layout: &InterpLayout, maps: &str) {
    let (lo, hi) = layout.image("aarch64");
    for m in file {
        assert!(
            !maps_part_of(m, layout.image("arm")),
            "the arm image is still mapped: {m:?}\n{maps}"
        );
        assert!(
            lo <= m.offset && m.offset + (m.end - m.start) <= hi,
            "a mapping of the interpreter file outside the running emulator's image \
             (file range {lo:#x}..{hi:#x}): {m:?}\n{maps}"
        );
    }
    assert!(
        file.iter().any(|m| m.perms.contains('x')),
        "the emulator's code is not among the file's mappings:\n{maps}"
    );
}

/// Where an executable anonymous page is refused (SELinux's execmem; here
/// a seccomp filter refusing mprotect of one page to PROT_EXEC with
/// EACCES, as execmem does), a setuid exec still runs, the way it did
/// before the trampoline: the emulator moved, but the interpreter file's
/// segments and the other arches' images left where they are.
#[test]
fn a_setuid_program_still_runs_where_an_executable_page_is_refused() {
    let s = Scratch::new("setuid-noexecpage");
    let helper = super::helper(&s);
    let (file, layout) = running_setuid_maps(&s, "", &format!("{} noexecpage", helper.display()));
    let maps = fs::read_to_string(s.join("maps")).unwrap();
    let fixed_code = file
        .iter()
        .any(|m| layout.at_fixed_address(m) && m.perms.contains('x'));
    let arm = file.iter().any(|m| maps_part_of(m, layout.image("arm")));
    let moved = file.iter().any(|m| {
        !layout.at_fixed_address(m)
            && m.perms.contains('x')
            && maps_part_of(m, layout.image("aarch64"))
    });
    assert!(
        fixed_code && arm && moved,
        "want the fallback's layout (interpreter code at the fixed address: {fixed_code}, \
         the arm image: {arm}, the emulator moved: {moved}):\n{maps}"
    );
}

/// Not setuid: today's fast path, untouched. The emulator runs where the
/// install put it and the interpreter file stays mapped whole (no
/// trampoline, no move).
#[test]
fn a_program_that_is_not_setuid_keeps_the_fast_path() {
    let s = Scratch::new("plain-maps");
    let (file, layout) = running_maps(&s, 0o755, "", "");
    let maps = fs::read_to_string(s.join("maps")).unwrap();
    assert!(
        !file.is_empty() && file.iter().all(|m| layout.at_fixed_address(m)),
        "the interpreter file is not all at its fixed address:\n{maps}"
    );
    for arch in ["aarch64", "arm"] {
        assert!(
            file.iter().any(|m| maps_part_of(m, layout.image(arch))),
            "the {arch} image is not mapped:\n{maps}"
        );
    }
    assert!(
        file.iter().any(|m| m.perms.contains('x')
            && maps_part_of(m, (0, layout.image("arm").0.min(layout.image("aarch64").0)))),
        "the interpreter's own code is not mapped:\n{maps}"
    );
}
