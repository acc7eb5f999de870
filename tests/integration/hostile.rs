//! Hostile input and setuid programs (issue 4), on the real kernel, one
//! module per theme: setuid programs run with their own credentials but
//! the caller cannot steer them ([`setuid`]), nor the descriptors they
//! start with ([`descriptors`]); damaged program files are refused with one
//! line and 126, never a crash ([`damaged`]); the edge cases of the exec
//! path: argc == 0, ARG_MAX, a target deleted after the exec, an
//! unreadable target, the interpreter started by hand ([`exec_path`]);
//! `install` interrupted, failing or racing leaves the table and its files
//! consistent ([`install_faults`]); hundreds of emulated execs at once
//! ([`many_execs`]).
//!
//! What a shell cannot do (an empty argv, telling a signal from an exit
//! status) is done by a small C helper (`hostile/hostile-helper.c`)
//! compiled by the test with `cc`; the foreign test programs are generated
//! here, none is committed. Both are shared by the modules: this file
//! builds them.

mod damaged;
mod descriptors;
mod exec_path;
mod install_faults;
mod many_execs;
mod setuid;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use qemu_shim_suite::{emulator_dir, set_mode, Captured, Scratch};

// ---------------------------------------------------------------------------
// Foreign programs made here

/// Where the generated aarch64 programs load (as `probe::exit_program`).
const BASE: u64 = 0x40_0000;

/// An aarch64 ELF executable: the ELF header, one read+execute `PT_LOAD`
/// segment holding the whole file, then `code`, whose first byte is the
/// entry point.
fn aarch64_program(code: &[u8]) -> Vec<u8> {
    const EHSIZE: u64 = 64;
    const PHENTSIZE: u64 = 56;
    let size = EHSIZE + PHENTSIZE + code.len() as u64;
    let mut f = Vec::with_capacity(size as usize);
    // e_ident: magic, ELF64, little-endian, version 1, System V ABI.
    f.extend_from_slice(b"\x7fELF\x02\x01\x01");
    f.extend_from_slice(&[0; 9]);
    f.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    f.extend_from_slice(&183u16.to_le_bytes()); // e_machine: EM_AARCH64
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&(BASE + EHSIZE + PHENTSIZE).to_le_bytes()); // e_entry
    f.extend_from_slice(&EHSIZE.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for half in [EHSIZE as u16, PHENTSIZE as u16, 1, 0, 0, 0] {
        // e_ehsize, e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx
        f.extend_from_slice(&half.to_le_bytes());
    }
    f.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    f.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R + X
    for word in [0, BASE, BASE, size, size, 0x1000] {
        // p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, p_align
        f.extend_from_slice(&word.to_le_bytes());
    }
    f.extend_from_slice(code);
    f
}

/// The machine code of `probe`, a libc-free aarch64 program that prints
/// what it was started with, one item a line, and exits 0:
///
/// ```text
/// argc=N          argc as the program sees it
/// arg=S           each argv entry
/// env=S           each environment entry
/// secure=N        auxv AT_SECURE
/// euid=N, uid=N, egid=N
/// ```
///
/// Assembled from this source with binutils (`aarch64-linux-gnu-as`, then
/// `objcopy -O binary -j .text`); the code is position-independent:
///
/// ```text
/// _start: mov x19, sp                 // the initial stack
///         ldr x0, [x19]
///         adr x1, s_argc
///         bl put_num_line             // argc=N
///         mov x20, #1                 // word index of argv[0]
/// 1:      ldr x21, [x19, x20, lsl #3]
///         cbz x21, 2f
///         adr x1, s_arg
///         bl put_cstr
///         mov x1, x21
///         bl put_line                 // arg=S
///         add x20, x20, #1
///         b 1b
/// 2:      add x20, x20, #1            // envp[0]
/// 3:      ldr x21, [x19, x20, lsl #3]
///         cbz x21, 4f
///         adr x1, s_env
///         bl put_cstr
///         mov x1, x21
///         bl put_line                 // env=S
///         add x20, x20, #1
///         b 3b
/// 4:      add x20, x20, #1            // auxv[0]
///         mov x26, #0
/// 5:      ldr x9, [x19, x20, lsl #3]  // key
///         add x10, x20, #1
///         ldr x10, [x19, x10, lsl #3] // value
///         add x20, x20, #2
///         cbz x9, 6f                  // AT_NULL
///         cmp x9, #23                 // AT_SECURE
///         b.ne 5b
///         mov x26, x10
///         b 5b
/// 6:      mov x0, x26
///         adr x1, s_secure
///         bl put_num_line
///         mov x8, #175                // geteuid
///         svc #0
///         adr x1, s_euid
///         bl put_num_line
///         mov x8, #174                // getuid
///         svc #0
///         adr x1, s_uid
///         bl put_num_line
///         mov x8, #177                // getegid
///         svc #0
///         adr x1, s_egid
///         bl put_num_line
///         mov x0, #0
///         mov x8, #94                 // exit_group
///         svc #0
/// put_cstr:                           // write(1, x1, strlen(x1))
///         mov x2, #0
/// 7:      ldrb w3, [x1, x2]
///         cbz w3, 8f
///         add x2, x2, #1
///         b 7b
/// 8:      mov x0, #1
///         mov x8, #64
///         svc #0
///         ret
/// put_line:                           // the string at x1, then "\n"
///         mov x27, x30
///         bl put_cstr
///         adr x1, s_nl
///         bl put_cstr
///         mov x30, x27
///         ret
/// put_num_line:                       // the label at x1, x0 in decimal, "\n"
///         mov x28, x30
///         mov x22, x0
///         bl put_cstr
///         sub sp, sp, #32
///         add x1, sp, #31
///         strb wzr, [x1]
///         mov x4, #10
/// 9:      udiv x5, x22, x4
///         msub x6, x5, x4, x22
///         add w6, w6, #48
///         sub x1, x1, #1
///         strb w6, [x1]
///         mov x22, x5
///         cbnz x22, 9b
///         bl put_line
///         add sp, sp, #32
///         mov x30, x28
///         ret
/// s_argc: .asciz "argc="
/// s_arg: .asciz "arg="
/// s_env: .asciz "env="
/// s_secure: .asciz "secure="
/// s_euid: .asciz "euid="
/// s_uid: .asciz "uid="
/// s_egid: .asciz "egid="
/// s_nl: .asciz "\n"
/// .balign 4
/// ```
const PROBE_CODE: [u32; 95] = [
    0x910003f3, 0xf9400260, 0x10000a41, 0x9400003f, 0xd2800034, 0xf8747a75, //
    0xb40000f5, 0x500009c1, 0x9400002b, 0xaa1503e1, 0x94000032, 0x91000694, //
    0x17fffff9, 0x91000694, 0xf8747a75, 0xb40000f5, 0x700008c1, 0x94000022, //
    0xaa1503e1, 0x94000029, 0x91000694, 0x17fffff9, 0x91000694, 0xd280001a, //
    0xf8747a69, 0x9100068a, 0xf86a7a6a, 0x91000a94, 0xb40000a9, 0xf1005d3f, //
    0x54ffff41, 0xaa0a03fa, 0x17fffff8, 0xaa1a03e0, 0x100006c1, 0x9400001f, //
    0xd28015e8, 0xd4000001, 0x10000681, 0x9400001b, 0xd28015c8, 0xd4000001, //
    0x50000621, 0x94000017, 0xd2801628, 0xd4000001, 0x700005c1, 0x94000013, //
    0xd2800000, 0xd2800bc8, 0xd4000001, 0xd2800002, 0x38626823, 0x34000063, //
    0x91000442, 0x17fffffd, 0xd2800020, 0xd2800808, 0xd4000001, 0xd65f03c0, //
    0xaa1e03fb, 0x97fffff6, 0x30000401, 0x97fffff4, 0xaa1b03fe, 0xd65f03c0, //
    0xaa1e03fc, 0xaa0003f6, 0x97ffffef, 0xd10083ff, 0x91007fe1, 0x3900003f, //
    0xd2800144, 0x9ac40ac5, 0x9b04d8a6, 0x1100c0c6, 0xd1000421, 0x39000026, //
    0xaa0503f6, 0xb5ffff56, 0x97ffffec, 0x910083ff, 0xaa1c03fe, 0xd65f03c0, //
    0x63677261, 0x7261003d, 0x65003d67, 0x003d766e, 0x75636573, 0x003d6572, //
    0x64697565, 0x6975003d, 0x65003d64, 0x3d646967, 0x00000a00,
];

/// The `probe` program (see [`PROBE_CODE`]).
fn probe() -> Vec<u8> {
    let code: Vec<u8> = PROBE_CODE.iter().flat_map(|w| w.to_le_bytes()).collect();
    aarch64_program(&code)
}

/// What `probe` printed.
#[derive(Debug, Default)]
struct Probed {
    argv: Vec<String>,
    env: BTreeSet<String>,
    values: Vec<(String, u64)>,
}

impl Probed {
    fn parse(out: &str) -> Probed {
        let mut p = Probed::default();
        for line in out.lines() {
            if let Some(a) = line.strip_prefix("arg=") {
                p.argv.push(a.to_owned());
            } else if let Some(e) = line.strip_prefix("env=") {
                p.env.insert(e.to_owned());
            } else if let Some((k, v)) = line.split_once('=') {
                if let Ok(n) = v.parse() {
                    p.values.push((k.to_owned(), n));
                }
            }
        }
        p
    }

    /// A numeric item (`argc`, `secure`, `euid`, `uid`, `egid`).
    fn get(&self, key: &str) -> Option<u64> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Environment entries whose name starts with `prefix`.
    fn env_named(&self, prefix: &str) -> Vec<&str> {
        self.env
            .iter()
            .filter(|e| e.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }
}

// ---------------------------------------------------------------------------
// The C helper

/// Source of `hostile-helper` (`hostile/hostile-helper.c`): what the tests
/// need and a shell cannot do.
const HELPER_C: &str = include_str!("hostile/hostile-helper.c");

/// Compiles `hostile-helper` into `s` and returns its path. Panics, saying
/// what to install, if there is no C compiler.
fn helper(s: &Scratch) -> PathBuf {
    let src = s.join("hostile-helper.c");
    let bin = s.join("hostile-helper");
    fs::write(&src, HELPER_C).expect("write helper source");
    let o = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run cc ({e}): install a C compiler (apt-get install gcc)")
        });
    assert!(
        o.status.success(),
        "cc failed to build the test helper:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    set_mode(&bin, 0o755);
    bin
}

/// One line of the helper's `exit N` / `signal N` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Exit(i32),
    Signal(i32),
    /// Still running after 2 s (`corpus` only): killed.
    Timeout,
}

fn parse_outcome(s: &str) -> Outcome {
    if s.trim() == "timeout" {
        return Outcome::Timeout;
    }
    let (kind, n) = s
        .trim()
        .split_once(' ')
        .unwrap_or_else(|| panic!("bad helper report {s:?}"));
    let n = n
        .parse()
        .unwrap_or_else(|_| panic!("bad helper report {s:?}"));
    match kind {
        "exit" => Outcome::Exit(n),
        "signal" => Outcome::Signal(n),
        _ => panic!("bad helper report {s:?}"),
    }
}

/// Reads a helper report of `TAG exit N` / `TAG signal N` lines.
fn tagged_outcomes(report: &Path) -> Vec<(String, Outcome)> {
    fs::read_to_string(report)
        .unwrap_or_else(|e| panic!("read {}: {e}", report.display()))
        .lines()
        .map(|l| {
            let (tag, rest) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (tag.to_owned(), parse_outcome(rest))
        })
        .collect()
}

#[track_caller]
fn probed(c: &Captured) -> Probed {
    assert_eq!(c.rc, 0, "probe did not run:\n{c}");
    Probed::parse(&c.stdout)
}

/// The register line of Debian's qemu-aarch64-static registered directly
/// (no qemu-shim) with `flags`, for comparisons.
fn direct_qemu_aarch64(flags: &str) -> String {
    use qemu_shim_registry::format::{Kind, RegisterLine};
    let a = qemu_shim_registry::arch::by_name("aarch64").unwrap();
    RegisterLine {
        name: "direct-qemu-aarch64".into(),
        kind: Kind::Magic {
            offset: a.offset,
            magic: a.magic.to_vec(),
            mask: Some(a.mask.to_vec()),
        },
        interpreter: emulator_dir()
            .join("qemu-aarch64-static")
            .display()
            .to_string(),
        flags: flags.parse().unwrap(),
    }
    .to_string()
}
