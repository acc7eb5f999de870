//! Micro-benchmarks of the interpreter's per-exec dispatch path, in process:
//! reading the target's header (mmap against pread), validating and
//! classifying it against the arch table, reading the kernel's argv and
//! building the emulator's, and parsing the dispatch table.
//!
//! Run with `cargo bench --bench dispatch` (about a minute). Each line is one
//! figure to compare across commits; criterion also prints the change against
//! the previous run on this machine. The run ends with a summary of the
//! header-read comparison, the question the design card left open. Needs the
//! busybox fixtures (`scripts/fetch-fixtures`).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::hint::black_box;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkGroup, Criterion};
use memmap2::{Mmap, MmapOptions};
use qemu_shim_interp::sys::{self, CStrArray};
use qemu_shim_registry::arch::{self, ARCHES};
use qemu_shim_registry::dispatch::{self, Convention, Entry, Table, REGION_SIZE};
use qemu_shim_registry::elf::{self, Header};
use qemu_shim_suite::{busybox, emulator_dir, target_dir, BUSYBOXES};

/// Bytes the interpreter reads from the start of the target.
const HEAD: usize = qemu_shim_interp::HEAD_BYTES;

/// Short warm-up and measurement: the operations take nanoseconds to a few
/// microseconds, so a second gives tens of thousands of iterations per
/// sample set, and the whole run stays near a minute.
fn configure(g: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .sample_size(50);
}

/// A fixture's first page and its size, as the interpreter would see them.
struct Fixture {
    arch: &'static str,
    head: Vec<u8>,
    size: u64,
}

fn load(debian_arch: &'static str) -> Fixture {
    let path = busybox(debian_arch);
    let file = File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let size = file.metadata().expect("stat fixture").len();
    let mut head = vec![0u8; HEAD];
    let n = file.read_at(&mut head, 0).expect("read fixture");
    head.truncate(n);
    Fixture {
        arch: debian_arch,
        head,
        size,
    }
}

/// The size the interpreter learns with fstat, by the interpreter's own
/// raw syscall (std's metadata uses statx, a different cost).
fn fstat_size(fd: i32) -> u64 {
    sys::fstat(fd).map(|i| i.size).unwrap_or(0)
}

/// Validates a header whose program headers lie within `buf`.
fn check(buf: &[u8], size: u64) -> bool {
    elf::validate(buf, size).is_ok() && arch::classify(buf).is_some()
}

fn header_read(c: &mut Criterion) {
    let path = busybox("arm64");
    let file = File::open(&path).expect("open arm64 busybox");
    let fd = file.as_raw_fd();
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL");
    let mut g = c.benchmark_group("header_read");
    configure(&mut g);

    // What the interpreter does once it holds a descriptor: fstat, one
    // pread of a page into a stack buffer, parse, classify, check segments.
    g.bench_function("pread_4096", |b| {
        b.iter(|| {
            let size = fstat_size(fd);
            let mut head = [0u8; HEAD];
            let n = sys::pread_full(fd, &mut head, 0).unwrap_or(0);
            black_box(check(head.get(..n).unwrap_or(&[]), size))
        })
    });

    // The bare reads, nothing checked: is a page dearer than 64 bytes?
    for n in [64usize, HEAD] {
        g.bench_function(format!("raw_pread/{n}"), |b| {
            b.iter(|| {
                let mut buf = [0u8; HEAD];
                let want = buf.get_mut(..n).unwrap_or(&mut []);
                black_box(sys::pread_full(fd, want, 0).unwrap_or(0))
            })
        });
    }

    // Two small reads: the ELF header, then exactly the program headers.
    g.bench_function("pread_64_then_phdrs", |b| {
        b.iter(|| {
            let size = fstat_size(fd);
            let mut ehdr = [0u8; 64];
            let n = sys::pread_full(fd, &mut ehdr, 0).unwrap_or(0);
            let bytes = ehdr.get(..n).unwrap_or(&[]);
            let Ok(h) = Header::parse(bytes) else {
                return black_box(false);
            };
            let (off, len) = h.phdr_range();
            let mut phdrs = [0u8; elf::MAX_PHDR_BYTES];
            let want = phdrs.get_mut(..len).unwrap_or(&mut []);
            let got = sys::pread_full(fd, want, off).unwrap_or(0);
            let ok = arch::classify(bytes).is_some()
                && h.check_segments(want.get(..got).unwrap_or(&[]), size)
                    .is_ok();
            black_box(ok)
        })
    });

    // The design card's alternative: map the first page (a fresh mapping
    // each time, as in a fresh process: the first touch faults it in from
    // the page cache), validate in place, unmap.
    g.bench_function("mmap_4096", |b| {
        b.iter(|| {
            let size = fstat_size(fd);
            // SAFETY: the fixture is a private cache file nothing truncates
            // or writes while the benchmark runs.
            let map: Mmap = unsafe { MmapOptions::new().len(HEAD).map(&file) }.expect("mmap");
            black_box(check(&map, size))
        })
    });

    // Map the whole file (memmap2 takes the size with its own fstat).
    g.bench_function("mmap_whole_file", |b| {
        b.iter(|| {
            // SAFETY: as above.
            let map: Mmap = unsafe { Mmap::map(&file) }.expect("mmap");
            let size = map.len() as u64;
            black_box(check(map.get(..HEAD).unwrap_or(&map), size))
        })
    });

    // The interpreter's own function, unchanged: fstat, regular-file check,
    // pread 4096, parse, classify, segment checks, copy out of the page.
    g.bench_function("shim_inspect", |b| {
        b.iter(|| black_box(qemu_shim_interp::inspect(fd, &cpath).is_ok()))
    });

    // The whole read without AT_EXECFD (flags F P, no O): open by path,
    // read, close. Puts the read's cost in proportion.
    g.bench_function("open_pread_4096_close", |b| {
        b.iter(|| {
            let fd = sys::open_read(&cpath).expect("open");
            let ok = qemu_shim_interp::inspect(fd, &cpath).is_ok();
            sys::close(fd);
            black_box(ok)
        })
    });
    g.bench_function("open_mmap_4096_close", |b| {
        b.iter(|| {
            let f = File::open(&path).expect("open");
            let size = fstat_size(f.as_raw_fd());
            // SAFETY: as above.
            let map: Mmap = unsafe { MmapOptions::new().len(HEAD).map(&f) }.expect("mmap");
            black_box(check(&map, size))
        })
    });
    g.finish();
}

fn classification(c: &mut Criterion) {
    let fixtures: Vec<Fixture> = BUSYBOXES.iter().map(|&(a, _, _)| load(a)).collect();
    let mut g = c.benchmark_group("classify");
    configure(&mut g);
    for f in &fixtures {
        g.bench_function(format!("validate/{}", f.arch), |b| {
            b.iter(|| black_box(elf::validate(black_box(&f.head), f.size).is_ok()))
        });
        g.bench_function(format!("classify/{}", f.arch), |b| {
            b.iter(|| black_box(arch::classify(black_box(&f.head)).map(|a| a.name)))
        });
    }
    // A valid header whose e_machine no row has: every row is tried and
    // each compares up to e_machine (bytes 18-19) before it fails.
    let mut worst = load("arm64");
    let machine = worst.head.get_mut(18..20).expect("ELF header");
    machine.copy_from_slice(&0x7ff0u16.to_le_bytes());
    assert!(
        arch::classify(&worst.head).is_none(),
        "the worst-case header must match no row"
    );
    g.bench_function(format!("classify/no_row_of_{}", ARCHES.len()), |b| {
        b.iter(|| black_box(arch::classify(black_box(&worst.head)).is_none()))
    });
    g.finish();
}

/// A null-terminated array of C strings, kept alive for a [`CStrArray`].
struct Argv {
    _strings: Vec<CString>,
    ptrs: Vec<*const u8>,
}

impl Argv {
    fn new(args: &[&str]) -> Argv {
        let strings: Vec<CString> = args
            .iter()
            .map(|s| CString::new(*s).expect("no NUL"))
            .collect();
        let mut ptrs: Vec<*const u8> = strings.iter().map(|s| s.as_ptr().cast()).collect();
        ptrs.push(std::ptr::null());
        Argv {
            _strings: strings,
            ptrs,
        }
    }

    fn array(&self) -> CStrArray<'_> {
        // SAFETY: `ptrs` holds len-1 pointers to NUL-terminated strings
        // owned by `_strings`, then a null; both live as long as `self`,
        // which the returned borrow cannot outlive.
        unsafe { CStrArray::new(self.ptrs.as_ptr(), self.ptrs.len() - 1) }
    }
}

/// The interpreter's argv building, `qemu_shim_interp::fill_argv` (what
/// `try_exec` runs): `[path, -0, argv0, --, program, rest…, NULL]`.
fn fill<'a>(slots: &mut [*const u8], lead: [&CStr; 5], argv: &CStrArray<'a>, rest: usize) {
    qemu_shim_interp::fill_argv(slots, &lead, argv, rest);
}

/// The auxv edits a carried emulator's start makes
/// (`sys::AuxEdits::apply` over the kernel's auxv, as `sys::launch` runs
/// it), over a typical x86_64 auxv of 22 entries.
fn auxv_building(c: &mut Criterion) {
    let mut g = c.benchmark_group("auxv");
    configure(&mut g);
    let kernel: Vec<(usize, usize)> = [
        33, 51, 16, 6, 17, 3, 4, 5, 7, 8, 9, 11, 12, 13, 14, 23, 25, 26, 31, 15, 27, 28, 2,
    ]
    .iter()
    .map(|&k| (k, 0x1000 * k))
    .collect();
    let edits = sys::AuxEdits {
        phdr: 0x7f00_0000_0040,
        phnum: 12,
        entry: 0x7f00_0022_9ab0,
        flags: 1,
        execfd: 3,
    };
    let mut out = vec![0usize; kernel.len() * 2];
    g.bench_function("edit_in_place/23_entries", |b| {
        b.iter(|| {
            for (i, &(k, v)) in black_box(&kernel).iter().enumerate() {
                out[2 * i] = k;
                out[2 * i + 1] = edits.apply(k, v);
            }
            black_box(&out);
        })
    });
    g.finish();
}

fn argv_building(c: &mut Criterion) {
    let mut g = c.benchmark_group("argv");
    configure(&mut g);
    let emulator = c"/usr/libexec/qemu-shim/qemu-aarch64-static";
    let many: Vec<String> = (0..100).map(|i| format!("argument-{i}")).collect();
    let cases: [(&str, Vec<&str>); 2] = [
        (
            "busybox_true",
            vec!["/i", "/bin/busybox", "busybox", "true"],
        ),
        (
            "100_args",
            ["/i", "/bin/busybox", "busybox"]
                .into_iter()
                .chain(many.iter().map(String::as_str))
                .collect(),
        ),
    ];
    for (name, args) in &cases {
        let owned = Argv::new(args);
        let argv = owned.array();

        // Reading the kernel's argv in the P layout.
        g.bench_function(format!("invocation/{name}"), |b| {
            b.iter(|| {
                let inv = qemu_shim_interp::invocation(black_box(&argv), true);
                black_box(inv.map(|i| i.rest).unwrap_or(0))
            })
        });

        // What the interpreter does: map argc+6 zeroed slots and fill them
        // (the first write faults the fresh page in). The interpreter never
        // unmaps: exec discards the whole address space. Here each mapping
        // is unmapped outside the timed part, or the benchmark would leak a
        // page per call.
        g.bench_function(format!("map_and_fill/{name}"), |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let Ok(inv) = qemu_shim_interp::invocation(&argv, true) else {
                        continue;
                    };
                    let n = 5 + argv.len().saturating_sub(inv.rest) + 1;
                    let slots = sys::map_slots(n).expect("mmap");
                    fill(
                        slots,
                        [emulator, c"-0", inv.argv0, c"--", inv.program],
                        &argv,
                        inv.rest,
                    );
                    black_box(&slots);
                    timed += start.elapsed();
                    // SAFETY: `slots` is the whole fresh anonymous mapping
                    // map_slots returned (n pointers from a page-aligned
                    // start); nothing refers to it after this.
                    unsafe {
                        libc::munmap(slots.as_mut_ptr().cast(), n * size_of::<usize>());
                    }
                }
                timed
            })
        });

        // The same filling into a buffer that already exists: the mapping's
        // share of the line above.
        let mut buf = vec![std::ptr::null::<u8>(); 5 + args.len() + 1];
        g.bench_function(format!("fill_only/{name}"), |b| {
            b.iter(|| {
                let Ok(inv) = qemu_shim_interp::invocation(&argv, true) else {
                    return;
                };
                fill(
                    &mut buf,
                    [emulator, c"-0", inv.argv0, c"--", inv.program],
                    &argv,
                    inv.rest,
                );
                black_box(&buf);
            })
        });
    }
    g.finish();
}

/// A region as `qemu-shim install` writes it: one entry per fetched
/// emulator (35 from qemu-user-static), exec-by-path.
fn installed_region() -> (Vec<u8>, Vec<String>) {
    let dir = emulator_dir();
    let mut names: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .expect("read emulator dir")
        .flatten()
        .filter_map(|e| {
            let f = e.file_name().into_string().ok()?;
            let name = f.strip_prefix("qemu-")?.strip_suffix("-static")?.to_owned();
            Some((name, e.path()))
        })
        .collect();
    names.sort();
    let paths: Vec<Vec<u8>> = names
        .iter()
        .map(|(_, p)| p.as_os_str().as_encoded_bytes().to_vec())
        .collect();
    let entries: Vec<Entry<'_>> = names
        .iter()
        .zip(&paths)
        .map(|((n, _), p)| Entry {
            arch: n,
            convention: Convention::ExecByPath,
            path: p,
            cpu: b"",
        })
        .collect();
    let mut region = vec![0u8; REGION_SIZE];
    dispatch::encode(&entries, 0, &mut region).expect("35 entries fit the region");
    (region, names.into_iter().map(|(n, _)| n).collect())
}

fn table(c: &mut Criterion) {
    let (region, names) = installed_region();
    let n = names.len();
    let first = names.first().expect("emulators").clone();
    let last = names.last().expect("emulators").clone();
    let parsed = Table::parse(&region).expect("parse");
    let mut g = c.benchmark_group("table");
    configure(&mut g);
    g.bench_function(format!("parse/{n}_entries"), |b| {
        b.iter(|| black_box(Table::parse(black_box(&region)).map(|t| t.len())))
    });
    for (label, name) in [("first", first.as_str()), ("last", last.as_str())] {
        g.bench_function(format!("find_{label}/{n}_entries"), |b| {
            b.iter(|| black_box(parsed.find(black_box(name)).map(|e| e.path.len())))
        });
    }
    g.bench_function(format!("find_absent/{n}_entries"), |b| {
        b.iter(|| black_box(parsed.find(black_box("no-such-arch")).is_none()))
    });
    // Per exec the interpreter parses the region, then finds its row.
    g.bench_function(format!("parse_and_find_aarch64/{n}_entries"), |b| {
        b.iter(|| {
            let t = Table::parse(black_box(&region)).expect("parse");
            black_box(t.find("aarch64").map(|e| e.path.len()))
        })
    });
    g.finish();
}

/// criterion's median estimate for `group/id`, if this run wrote it.
/// Read with a string search: the file is criterion's own flat JSON
/// (`"median":{…,"point_estimate":N,…}`) and pulling in a JSON parser for
/// one number is not worth a dependency.
fn median_ns(group: &str, id: &str, since: SystemTime) -> Option<f64> {
    let home = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("criterion"));
    // criterion names the directory after the id with `/` made `_`.
    let path = home
        .join(group)
        .join(id.replace('/', "_"))
        .join("new/estimates.json");
    let fresh = std::fs::metadata(&path).ok()?.modified().ok()? >= since;
    if !fresh {
        return None;
    }
    let text = std::fs::read_to_string(&path).ok()?;
    let rest = text.get(text.find("\"median\"")?..)?;
    let rest = rest.get(rest.find("\"point_estimate\":")? + "\"point_estimate\":".len()..)?;
    let end = rest.find([',', '}'])?;
    rest.get(..end)?.trim().parse().ok()
}

fn summary(since: SystemTime) {
    let get = |id: &str| median_ns("header_read", id, since);
    let Some(pread) = get("pread_4096") else {
        return;
    };
    println!("\nheader read, median per call (this run):");
    if let (Some(small), Some(page)) = (get("raw_pread/64"), get("raw_pread/4096")) {
        println!(
            "  raw pread of 64 bytes {small:.0} ns, of 4096 bytes {page:.0} ns ({:.2}x)",
            page / small
        );
    }
    for id in ["pread_64_then_phdrs", "mmap_4096", "mmap_whole_file"] {
        if let Some(t) = get(id) {
            println!(
                "  {id:<22} {t:>9.0} ns  = {:.2}x pread_4096 ({pread:.0} ns)",
                t / pread
            );
        }
    }
}

fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    header_read(&mut c);
    classification(&mut c);
    argv_building(&mut c);
    auxv_building(&mut c);
    table(&mut c);
    c.final_summary();
    summary(started);
}
