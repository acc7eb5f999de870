//! Everything in the interpreter library that needs `unsafe`: raw Linux
//! syscalls, the process's initial stack and its rewrite for a carried
//! emulator. (The binary's entry point, its own relocation and the memory
//! functions a libc-free Rust program must provide are in `src/rt.rs`.)
//!
//! # Safety
//!
//! The rest of the crate is `unsafe`-free and calls the safe wrappers here.
//! Each wrapper passes the kernel only pointers derived from live Rust
//! references of the right length, so the kernel cannot write outside them.
//! The initial-stack readers trust the layout the kernel documents for a new
//! process (argc, argv, NULL, envp, NULL, auxv, AT_NULL), which holds for any
//! process the kernel starts: this module is only ever entered from `_start`.
#![allow(unsafe_code)]

use core::ffi::CStr;
use core::marker::PhantomData;

use qemu_shim_registry_core::dispatch::{Carried, EMPTY_REGION_HEADER, REGION_SIZE};

/// A file descriptor.
pub type Fd = i32;

/// A Linux error number, as returned (negated) by a failed syscall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const EINTR: Errno = Errno(4);
    pub const EIO: Errno = Errno(5);
    pub const E2BIG: Errno = Errno(7);
    pub const ENOEXEC: Errno = Errno(8);
    pub const EBADF: Errno = Errno(9);
    pub const ENOMEM: Errno = Errno(12);
    pub const EACCES: Errno = Errno(13);
    pub const ENOTDIR: Errno = Errno(20);
    pub const EISDIR: Errno = Errno(21);
    pub const EINVAL: Errno = Errno(22);
    pub const ETXTBSY: Errno = Errno(26);
    pub const EMFILE: Errno = Errno(24);
    pub const ERANGE: Errno = Errno(34);
    pub const ENAMETOOLONG: Errno = Errno(36);
    pub const ELOOP: Errno = Errno(40);
}

/// Turns a raw syscall return into a result: the kernel reports failure as
/// a value in `-4095..=-1`.
fn check(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret as i32))
    } else {
        Ok(ret as usize)
    }
}

#[cfg(target_arch = "x86_64")]
mod nr {
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const FSTAT: usize = 5;
    pub const MMAP: usize = 9;
    pub const PREAD64: usize = 17;
    pub const EXECVE: usize = 59;
    pub const EXIT_GROUP: usize = 231;
    pub const MPROTECT: usize = 10;
    pub const MREMAP: usize = 25;
    pub const MUNMAP: usize = 11;
    pub const FCNTL: usize = 72;
    pub const OPENAT: usize = 257;
    pub const NEWFSTATAT: usize = 262;
    pub const GETCWD: usize = 79;
}

#[cfg(target_arch = "aarch64")]
mod nr {
    pub const OPENAT: usize = 56;
    pub const CLOSE: usize = 57;
    pub const WRITE: usize = 64;
    pub const PREAD64: usize = 67;
    pub const FSTAT: usize = 80;
    pub const EXIT_GROUP: usize = 94;
    pub const EXECVE: usize = 221;
    pub const MMAP: usize = 222;
    pub const MPROTECT: usize = 226;
    pub const MREMAP: usize = 216;
    pub const MUNMAP: usize = 215;
    pub const FCNTL: usize = 25;
    pub const NEWFSTATAT: usize = 79;
    pub const GETCWD: usize = 17;
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("qemu-shim-interp supports x86_64 and aarch64 hosts");

/// A raw syscall with up to six arguments.
///
/// # Safety
/// The arguments must be valid for syscall `n` as the kernel documents it:
/// every pointer must be valid for the access that syscall makes.
#[cfg(target_arch = "x86_64")]
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments suit syscall `n`; the
    // `syscall` instruction clobbers only rcx and r11, declared here.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") n as isize => ret,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

/// A raw syscall with up to six arguments.
///
/// # Safety
/// As for the x86_64 version.
#[cfg(target_arch = "aarch64")]
unsafe fn syscall6(n: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments suit syscall `n`; `svc 0`
    // returns in x0 and clobbers nothing else.
    unsafe {
        core::arch::asm!(
            "svc 0",
            in("x8") n,
            inlateout("x0") a[0] as isize => ret,
            in("x1") a[1], in("x2") a[2], in("x3") a[3], in("x4") a[4], in("x5") a[5],
            options(nostack),
        );
    }
    ret
}

/// Ends the process with `code` (all threads; there is only one).
pub fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and never returns; the loop
        // only satisfies the type checker.
        unsafe {
            syscall6(nr::EXIT_GROUP, [code as usize, 0, 0, 0, 0, 0]);
        }
    }
}

/// Writes all of `buf` to `fd`, retrying short writes and EINTR.
pub fn write_all(fd: Fd, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice; write reads at most `buf.len()` bytes from it.
        let r = check(unsafe {
            syscall6(
                nr::WRITE,
                [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0],
            )
        });
        match r {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => buf = buf.get(n..).unwrap_or(&[]),
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

const AT_FDCWD: isize = -100;
const O_RDONLY: usize = 0;
const O_CLOEXEC: usize = 0o2000000;

/// Opens `path` for reading, close-on-exec so it never reaches the emulator.
pub fn open_read(path: &CStr) -> Result<Fd, Errno> {
    // SAFETY: `path` is NUL-terminated and lives across the call.
    let r = unsafe {
        syscall6(
            nr::OPENAT,
            [
                AT_FDCWD as usize,
                path.as_ptr() as usize,
                O_RDONLY | O_CLOEXEC,
                0,
                0,
                0,
            ],
        )
    };
    check(r).map(|fd| fd as Fd)
}

/// Closes `fd`. Errors are ignored by callers on purpose: the descriptor is
/// gone either way (close(2): do not retry).
pub fn close(fd: Fd) {
    // SAFETY: close takes an integer.
    unsafe {
        syscall6(nr::CLOSE, [fd as usize, 0, 0, 0, 0, 0]);
    }
}

/// The lowest descriptor that is not standard input, output or error.
pub const FIRST_NON_STDIO: Fd = 3;

/// Moves `fd` to the lowest free descriptor >= [`FIRST_NON_STDIO`]
/// (`fcntl(F_DUPFD)`, or `F_DUPFD_CLOEXEC` with `cloexec`) and closes the
/// original, so that a standard descriptor the caller left closed stays
/// closed. Returns the new descriptor; on failure `fd` is left as it was.
pub fn move_off_stdio(fd: Fd, cloexec: bool) -> Result<Fd, Errno> {
    const F_DUPFD: usize = 0;
    const F_DUPFD_CLOEXEC: usize = 1030;
    let cmd = if cloexec { F_DUPFD_CLOEXEC } else { F_DUPFD };
    // SAFETY: fcntl with F_DUPFD(_CLOEXEC) takes integers and touches no
    // memory of ours.
    let r = unsafe {
        syscall6(
            nr::FCNTL,
            [fd as usize, cmd, FIRST_NON_STDIO as usize, 0, 0, 0],
        )
    };
    let moved = check(r)? as Fd;
    close(fd);
    Ok(moved)
}

/// Reads up to `buf.len()` bytes at `offset` without moving the file offset
/// (the kernel's AT_EXECFD offset is shared with the emulator). Returns the
/// bytes read; fewer than asked only at end of file.
pub fn pread_full(fd: Fd, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    let mut done = 0usize;
    while done < buf.len() {
        let rest = buf.get_mut(done..).unwrap_or(&mut []);
        // SAFETY: `rest` is a live, writable slice; pread writes at most
        // `rest.len()` bytes into it.
        let r = check(unsafe {
            syscall6(
                nr::PREAD64,
                [
                    fd as usize,
                    rest.as_mut_ptr() as usize,
                    rest.len(),
                    (offset + done as u64) as usize,
                    0,
                    0,
                ],
            )
        });
        match r {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// What `stat` and `fstat` tell about a file.
#[derive(Debug, Clone, Copy)]
pub struct FileInfo {
    pub size: u64,
    pub mode: u32,
    /// Device and inode: together, which file it is.
    pub dev: u64,
    pub ino: u64,
}

impl FileInfo {
    /// Reads a `struct stat` the kernel filled. It is 144 bytes on x86_64
    /// and 128 on aarch64 (asm-generic); st_dev and st_ino are the first
    /// two words and st_size sits at byte 48 on both, st_mode at 24
    /// (x86_64) or 16.
    fn from_raw(st: &[u64; 18]) -> FileInfo {
        #[cfg(target_arch = "x86_64")]
        let mode = st[3] as u32;
        #[cfg(target_arch = "aarch64")]
        let mode = st[2] as u32;
        FileInfo {
            size: st[6],
            mode,
            dev: st[0],
            ino: st[1],
        }
    }

    /// Whether both name the same file.
    pub fn same_file(&self, other: &FileInfo) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// File type bits of `st_mode`, and the regular-file value.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;

/// `fstat(fd)`.
pub fn fstat(fd: Fd) -> Result<FileInfo, Errno> {
    let mut st = [0u64; 18];
    // SAFETY: `st` is a live, writable 144-byte buffer, large enough for
    // either layout of struct stat.
    check(unsafe {
        syscall6(
            nr::FSTAT,
            [fd as usize, st.as_mut_ptr() as usize, 0, 0, 0, 0],
        )
    })?;
    Ok(FileInfo::from_raw(&st))
}

/// `stat(path)`, relative to the working directory, following symbolic
/// links (ENOENT: nothing there).
///
/// `stat` resolves the path with the process's effective (file system)
/// ids, the ones the emulator will open files with; `access(2)` would
/// use the real ids, which differ in a setuid program (see `check_loader`
/// and `absolute_program` in lib.rs for why these lookups are safe there).
pub fn stat(path: &CStr) -> Result<FileInfo, Errno> {
    let mut st = [0u64; 18];
    // SAFETY: `path` is NUL-terminated and lives across the call; `st` is
    // a live, writable buffer large enough for either layout of struct
    // stat.
    check(unsafe {
        syscall6(
            nr::NEWFSTATAT,
            [
                AT_FDCWD as usize,
                path.as_ptr() as usize,
                st.as_mut_ptr() as usize,
                0,
                0,
                0,
            ],
        )
    })?;
    Ok(FileInfo::from_raw(&st))
}

/// The raw `getcwd` syscall: the working directory into `buf`, NUL
/// included; returns its length without the NUL. Unlike the C library's
/// wrapper it passes on what the kernel says: ENOENT for a deleted
/// directory, ERANGE when it does not fit `buf`, ENAMETOOLONG beyond a
/// page — and, for a directory outside the process's root (a chroot
/// entered without chdir), success with a path that starts
/// `(unreachable)`, not `/`: callers must check.
pub fn getcwd(buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is a live, writable slice; getcwd writes at most
    // `buf.len()` bytes into it.
    let n = check(unsafe {
        syscall6(
            nr::GETCWD,
            [buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0, 0],
        )
    })?;
    // The kernel counts the NUL: check it is where it says.
    match n.checked_sub(1) {
        Some(len) if buf.get(len) == Some(&0) => Ok(len),
        _ => Err(Errno::ERANGE),
    }
}

const PROT_READ: usize = 1;
const PROT_WRITE: usize = 2;
const MAP_PRIVATE: usize = 0x02;
const MAP_ANONYMOUS: usize = 0x20;

/// Maps `bytes` zeroed bytes of fresh memory and returns its address. The
/// interpreter never frees it: the process is replaced by `execve` or exits.
fn map_zeroed(bytes: usize) -> Result<usize, Errno> {
    // SAFETY: an anonymous private mapping touches no existing memory.
    check(unsafe {
        syscall6(
            nr::MMAP,
            [
                0,
                bytes,
                PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                usize::MAX,
                0,
            ],
        )
    })
}

/// Maps `n` zeroed pointer-sized slots of fresh memory (see [`map_zeroed`]).
pub fn map_slots(n: usize) -> Result<&'static mut [*const u8], Errno> {
    let bytes = n
        .checked_mul(core::mem::size_of::<usize>())
        .ok_or(Errno::E2BIG)?;
    if bytes == 0 {
        return Ok(&mut []);
    }
    let addr = map_zeroed(bytes)?;
    // SAFETY: the kernel returned a fresh, page-aligned, zero-filled mapping
    // of `bytes` bytes that nothing else refers to; null pointers are valid
    // `*const u8` values, so the zeroed slots are initialised.
    Ok(unsafe { core::slice::from_raw_parts_mut(addr as *mut *const u8, n) })
}

/// A copy of `src` in fresh memory that lives as long as the process: for
/// bytes a failure message quotes after the buffer they came from is gone.
pub fn copy_to_static(src: &[u8]) -> Result<&'static [u8], Errno> {
    if src.is_empty() {
        return Ok(&[]);
    }
    let addr = map_zeroed(src.len())?;
    // SAFETY: the kernel returned a fresh, zero-filled (so initialised)
    // mapping of `src.len()` bytes that nothing else refers to.
    let dst = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, src.len()) };
    dst.copy_from_slice(src);
    Ok(dst)
}

/// Replaces the process with `path`. Returns only on failure, hence the
/// type: the error is the only possible result.
///
/// `argv` must end with a null pointer; every other slot must point to a
/// NUL-terminated string (built from [`CStr`]s by the caller).
pub fn execve(path: &CStr, argv: &[*const u8], envp: &CStrArray<'_>) -> Errno {
    if argv.last().is_none_or(|p| !p.is_null()) {
        return Errno::E2BIG;
    }
    // SAFETY: `path` is NUL-terminated; `argv` is a live, null-terminated
    // array of string pointers (checked above for the terminator; callers
    // fill it from CStrs); `envp` came from the kernel (or from
    // `CStrArray::new`'s contract) and is null-terminated.
    let r = unsafe {
        syscall6(
            nr::EXECVE,
            [
                path.as_ptr() as usize,
                argv.as_ptr() as usize,
                envp.ptr as usize,
                0,
                0,
                0,
            ],
        )
    };
    match check(r) {
        Err(e) => e,
        // execve does not return on success; a return of 0 cannot happen.
        Ok(_) => Errno::EIO,
    }
}

/// A null-terminated array of C strings the kernel handed us (argv, envp),
/// read through a safe interface.
#[derive(Clone, Copy)]
pub struct CStrArray<'a> {
    ptr: *const *const u8,
    len: usize,
    _life: PhantomData<&'a CStr>,
}

impl<'a> CStrArray<'a> {
    /// # Safety
    /// `ptr` must point to `len` pointers to NUL-terminated strings followed
    /// by a null pointer, all valid and unchanged for `'a`.
    pub unsafe fn new(ptr: *const *const u8, len: usize) -> CStrArray<'a> {
        CStrArray {
            ptr,
            len,
            _life: PhantomData,
        }
    }

    /// Number of strings (not counting the terminating null).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no strings.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// String `i`, if `i < len`.
    pub fn get(&self, i: usize) -> Option<&'a CStr> {
        if i >= self.len {
            return None;
        }
        // SAFETY: `i < len`, so slot `i` is within the array `new`'s
        // contract describes, and it points to a NUL-terminated string
        // valid for 'a.
        unsafe {
            let p = *self.ptr.add(i);
            if p.is_null() {
                None
            } else {
                Some(CStr::from_ptr(p.cast()))
            }
        }
    }

    /// The strings from `start` on.
    pub fn iter_from(&self, start: usize) -> impl Iterator<Item = &'a CStr> + '_ {
        (start..self.len).filter_map(move |i| self.get(i))
    }
}

// Evaluated at compile time: an index out of bounds is a build error, not a
// run-time panic.
#[allow(clippy::indexing_slicing)]
const fn empty_region() -> [u8; REGION_SIZE] {
    let mut region = [0u8; REGION_SIZE];
    let mut i = 0;
    while i < EMPTY_REGION_HEADER.len() {
        region[i] = EMPTY_REGION_HEADER[i];
        i += 1;
    }
    region
}

// The dispatch table region, in a section of its own that the CLI finds by
// name and rewrites in the installed copy. Read-only data with no
// pointers: it needs no relocation. (A named link section is why this sits
// in the unsafe module: the lint counts it as unsafe code.)
#[used]
#[link_section = ".qemu_shim_table"]
static REGION: [u8; REGION_SIZE] = empty_region();

/// The dispatch table region as mapped from this interpreter file.
pub fn table_region() -> &'static [u8; REGION_SIZE] {
    // The build-time contents are not what runs: the CLI rewrites the
    // region in the file. Hide the initializer from the optimiser so every
    // read is a real load from the mapped file.
    core::hint::black_box(&REGION)
}

/// Auxiliary vector keys the interpreter reads.
pub const AT_NULL: usize = 0;
pub const AT_EXECFD: usize = 2;
pub const AT_FLAGS: usize = 8;
pub const AT_SECURE: usize = 23;

/// What the kernel told the interpreter about this exec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Aux {
    /// AT_EXECFD: the program, opened by the kernel (flags O or C).
    pub execfd: Option<Fd>,
    /// AT_FLAGS (bit 0: binfmt_misc P flag, kernel >= 5.12).
    pub flags: usize,
    /// AT_SECURE: credentials changed for this exec (setuid program under C).
    pub secure: bool,
    /// AT_PHDR, AT_PHNUM: this interpreter's own program headers in memory
    /// (a setuid exec reads them to unmap the file's segments).
    pub phdr: usize,
    pub phnum: usize,
    /// AT_PAGESZ: the kernel's page size.
    pub pagesz: usize,
}

impl Aux {
    /// Reads the auxv pairs `words` (key, value, key, value, …).
    pub fn parse(words: impl Iterator<Item = (usize, usize)>) -> Aux {
        let mut aux = Aux::default();
        for (key, value) in words {
            match key {
                AT_NULL => break,
                AT_EXECFD => aux.execfd = i32::try_from(value).ok(),
                AT_FLAGS => aux.flags = value,
                AT_SECURE => aux.secure = value != 0,
                AT_PHDR => aux.phdr = value,
                AT_PHNUM => aux.phnum = value,
                AT_PAGESZ => aux.pagesz = value,
                _ => {}
            }
        }
        aux
    }
}

/// The process as the kernel started it.
pub struct Process<'a> {
    pub argv: CStrArray<'a>,
    pub envp: CStrArray<'a>,
    pub aux: Aux,
    /// The kernel's initial stack block, which [`launch`] rewrites in place.
    /// `None` where no kernel stack exists (the unit tests).
    pub stack: Option<Stack>,
}

/// The kernel's initial stack: argc, argv, envp and auxv at `sp`, with
/// [`GAP`] free bytes below that nothing else uses (see `_start`).
pub struct Stack {
    sp: *mut usize,
    /// Words from `sp` to the end of auxv (its AT_NULL pair included).
    words: usize,
}

/// Longest path the kernel takes, its NUL included (PATH_MAX).
pub const PATH_MAX: usize = 4096;

/// The string inserted before the program's path so an emulator never
/// reads a path starting with `-` as an option.
const END_OF_OPTIONS: &[u8; 3] = b"--\0";

/// qemu's option naming the CPU model (issue 15), inserted before `--`
/// with the model the administrator chose for the arch.
const CPU_OPTION: &[u8; 5] = b"-cpu\0";

/// Longest CPU model the table holds, its NUL included (a u8 length).
pub const MAX_CPU: usize = 255;

/// Most words [`launch`] inserts into the block: `-cpu` and its model,
/// `--`, the path as given kept as argv0 (no P layout, see
/// [`Launch::program`]), an AT_EXECFD pair.
const MAX_INSERTED: usize = 6;

/// Bytes `_start` leaves free below the kernel's stack block, so that
/// [`launch`] can move the block down by the words it inserts plus the
/// strings they point to: `-cpu` and a model up to [`MAX_CPU`], `--` and a
/// program path up to [`PATH_MAX`]. Those strings must live in the block
/// the emulator receives, not in this interpreter's image (which a setuid
/// exec may unmap). A multiple of 16, so the stack pointer stays aligned;
/// 4,416 bytes, one more stack page.
pub const GAP: usize = (MAX_INSERTED
    + (END_OF_OPTIONS.len() + CPU_OPTION.len() + MAX_CPU + PATH_MAX).div_ceil(8))
.next_multiple_of(2)
    * 8;

const AT_PHDR: usize = 3;
const AT_PHENT: usize = 4;
const AT_PHNUM: usize = 5;
const AT_PAGESZ: usize = 6;
const AT_BASE: usize = 7;
const AT_ENTRY: usize = 9;

/// What [`launch`] needs to start a carried emulator.
pub struct Launch<'a> {
    /// Where the image is and how to protect it (from the dispatch table).
    pub carried: &'a Carried,
    /// The program, open: the emulator reads it from here (AT_EXECFD).
    pub execfd: Fd,
    /// Whether argv holds the original argv0 after the path (P layout);
    /// told to the emulator with AT_FLAGS_PRESERVE_ARGV0.
    pub preserve_argv0: bool,
    /// Environment entries (`NAME=value` bytes) to leave out.
    pub drop_env: fn(&[u8]) -> bool,
    /// Never run a pre-relocated image where it sits (a setuid exec): move
    /// it to an address the kernel picks at random and have the emulator's
    /// C library relocate it there.
    pub randomize: bool,
    /// The program's path to hand the emulator instead of the kernel's
    /// (`argv[1]`): copied into the stack block. The program's argv0 stays
    /// what it was: without the P layout (where the emulator would show
    /// the path as argv0) the kernel's path is kept as argv0 and the
    /// emulator told so with AT_FLAGS_PRESERVE_ARGV0. One longer than
    /// [`PATH_MAX`] is not used.
    pub program: Option<&'a CStr>,
    /// The CPU model to start qemu with (`-cpu MODEL` before `--`),
    /// copied into the stack block; one longer than [`MAX_CPU`] is not
    /// used.
    pub cpu: Option<&'a CStr>,
}

/// The auxv values a carried emulator gets instead of the interpreter's:
/// what the kernel would have given it, had it started the emulator as a
/// binfmt_misc interpreter.
#[derive(Debug, Clone, Copy)]
pub struct AuxEdits {
    /// The emulator's program headers in memory.
    pub phdr: usize,
    pub phnum: usize,
    /// Its entry point.
    pub entry: usize,
    /// AT_FLAGS: the preserve-argv0 bit when argv has the P layout.
    pub flags: usize,
    /// The program's descriptor.
    pub execfd: usize,
}

impl AuxEdits {
    /// The value auxv entry `key` gets (`value`: the kernel's).
    pub fn apply(&self, key: usize, value: usize) -> usize {
        match key {
            AT_PHDR => self.phdr,
            AT_PHENT => core::mem::size_of::<[u64; 7]>(),
            AT_PHNUM => self.phnum,
            AT_BASE => 0,
            AT_ENTRY => self.entry,
            AT_FLAGS => self.flags,
            AT_EXECFD => self.execfd,
            _ => value,
        }
    }
}

/// The address of a linker-defined symbol, computed PC-relatively: right
/// even before the program has relocated itself, unlike an `extern static`,
/// which would be read through the not yet relocated GOT.
macro_rules! address_of {
    ($sym:literal) => {{
        let a: usize;
        // SAFETY: computes an address PC-relatively; touches no memory.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            core::arch::asm!(
                concat!("lea {a}, [rip + ", $sym, "]"),
                a = out(reg) a,
                options(nomem, nostack, pure),
            );
        }
        // SAFETY: as above.
        #[cfg(target_arch = "aarch64")]
        unsafe {
            core::arch::asm!(
                concat!("adrp {a}, ", $sym),
                concat!("add {a}, {a}, :lo12:", $sym),
                a = out(reg) a,
                options(nomem, nostack, pure),
            );
        }
        a
    }};
}

/// The interpreter's own load address (its ELF header in memory).
pub fn load_base() -> usize {
    address_of!("__ehdr_start")
}

/// The address of the interpreter's own dynamic section.
pub fn dynamic_section() -> usize {
    address_of!("_DYNAMIC")
}

fn mprotect(addr: usize, len: usize, prot: u32) -> Result<(), Errno> {
    // SAFETY: changing protections of pages nothing in this program refers
    // to: the callers pass ranges inside the carried image (mapped by the
    // kernel from this file) or the trampoline's own fresh page.
    check(unsafe { syscall6(nr::MPROTECT, [addr, len, prot as usize, 0, 0, 0]) }).map(|_| ())
}

/// Moves the `len` bytes mapped at `from` (one mapping, not yet split by
/// protections) to an address the kernel chooses, randomised like any
/// mmap with address randomisation on. Returns the new address.
fn move_to_random(from: usize, len: usize) -> Result<usize, Errno> {
    const PROT_NONE: usize = 0;
    const MREMAP_MAYMOVE: usize = 1;
    const MREMAP_FIXED: usize = 2;
    // SAFETY: an anonymous mapping at an address of the kernel's choosing
    // touches no existing memory; it only reserves the destination.
    let to = check(unsafe {
        syscall6(
            nr::MMAP,
            [
                0,
                len,
                PROT_NONE,
                MAP_PRIVATE | MAP_ANONYMOUS,
                usize::MAX,
                0,
            ],
        )
    })?;
    // SAFETY: moves the carried image (which nothing in this program refers
    // to) onto the reservation just made, replacing it.
    check(unsafe {
        syscall6(
            nr::MREMAP,
            [from, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to, 0],
        )
    })
}

/// Most program headers of its own the interpreter reads to plan a setuid
/// exec's unmapping (the installed file has 9).
const MAX_PHDRS: usize = 16;

/// Most ranges the trampoline unmaps: each loadable segment of the file,
/// one of them split in two around the running emulator's image.
pub const MAX_UNMAPS: usize = MAX_PHDRS + 1;

/// A loadable segment of the interpreter file: its file offset, address
/// and size in memory, as its program header gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    pub offset: u64,
    pub vaddr: u64,
    pub memsz: u64,
}

/// The ranges of this interpreter file's own mapping that a setuid exec
/// unmaps: (start, length) pairs, page-aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmaps {
    ranges: [(usize, usize); MAX_UNMAPS],
    len: usize,
}

impl Unmaps {
    /// The ranges, in program-header order.
    pub fn ranges(&self) -> &[(usize, usize)] {
        self.ranges.get(..self.len).unwrap_or(&[])
    }

    fn push(&mut self, start: usize, end: usize) -> Result<(), Errno> {
        if end > start {
            let slot = self.ranges.get_mut(self.len).ok_or(Errno::E2BIG)?;
            *slot = (start, end - start);
            self.len += 1;
        }
        Ok(())
    }
}

/// Plans which ranges a setuid exec unmaps: exactly the pages the kernel
/// mapped for each of the file's loadable segments `loads` (the segment
/// whose file offset is 0 sits at `base`, the ELF header's address, which
/// gives the load bias), rounded out to `page`, except `keep` (start, end):
/// the running emulator's image at its place in the file's mapping, left
/// alone whether it still runs there or was moved out (leaving a hole
/// that is not the file's any more). Only the segments' own pages: the
/// gaps between them (alignment) are not the file's and may hold other
/// mappings. `keep` is widened to whole pages.
///
/// `ENOEXEC` if the headers do not describe such a mapping (no segment at
/// offset 0, a page size that is not a power of two, addresses that wrap,
/// `keep` not inside one segment), `E2BIG` if there are too many.
pub fn plan_unmaps(
    loads: &[Load],
    base: usize,
    page: usize,
    keep: (usize, usize),
) -> Result<Unmaps, Errno> {
    if !page.is_power_of_two() {
        return Err(Errno::ENOEXEC);
    }
    let first = loads.iter().find(|l| l.offset == 0).ok_or(Errno::ENOEXEC)?;
    let bias = base.wrapping_sub(first.vaddr as usize);
    // The image's pages, whole: its last page is its own.
    let keep = (
        keep.0 & !(page - 1),
        keep.1
            .checked_next_multiple_of(page)
            .ok_or(Errno::ENOEXEC)?,
    );
    let mut plan = Unmaps {
        ranges: [(0, 0); MAX_UNMAPS],
        len: 0,
    };
    let mut kept = false;
    for l in loads {
        let start = bias.wrapping_add(l.vaddr as usize) & !(page - 1);
        let end = bias
            .checked_add(l.vaddr as usize)
            .and_then(|a| a.checked_add(l.memsz as usize))
            .and_then(|e| e.checked_next_multiple_of(page))
            .ok_or(Errno::ENOEXEC)?;
        if keep.0 < end && start < keep.1 {
            if keep.0 < start || keep.1 > end || kept {
                return Err(Errno::ENOEXEC);
            }
            kept = true;
            plan.push(start, keep.0)?;
            plan.push(keep.1, end)?;
        } else {
            plan.push(start, end)?;
        }
    }
    if !kept {
        return Err(Errno::ENOEXEC);
    }
    Ok(plan)
}

/// Reads this interpreter's own loadable segments from its program headers
/// in memory (the kernel's AT_PHDR and AT_PHNUM).
fn own_loads(aux: &Aux) -> Result<([Load; MAX_PHDRS], usize), Errno> {
    const PT_LOAD: u32 = 1;
    const PHENT: usize = 56;
    if aux.phdr == 0 || aux.phnum > MAX_PHDRS || aux.phdr & 7 != 0 {
        return Err(Errno::ENOEXEC);
    }
    let mut loads = [Load::default(); MAX_PHDRS];
    let mut n = 0;
    for i in 0..aux.phnum {
        let h = (aux.phdr + i * PHENT) as *const u64;
        // SAFETY: the kernel put this program's `phnum` 56-byte program
        // headers at AT_PHDR, inside a segment it mapped readable, and
        // nothing has unmapped it; the address is 8-byte aligned (checked
        // above) and each header read is within its 56 bytes: p_type and
        // p_flags (word 0), p_offset (1), p_vaddr (2), p_memsz (5).
        let (kind, offset, vaddr, memsz) = unsafe { (*h as u32, *h.add(1), *h.add(2), *h.add(5)) };
        if kind == PT_LOAD {
            if let Some(slot) = loads.get_mut(n) {
                *slot = Load {
                    offset,
                    vaddr,
                    memsz,
                };
                n += 1;
            }
        }
    }
    Ok((loads, n))
}

/// Whether a failure to make an anonymous page executable means the
/// system forbids it (SELinux's `execmem`, a seccomp filter), in which
/// case a setuid exec starts the emulator without the trampoline, as
/// before: the interpreter's segments and the other images stay mapped.
/// Any other failure (ENOMEM, …) fails the exec.
pub fn executable_page_refused(e: Errno) -> bool {
    e == Errno::EACCES || e == Errno::EPERM
}

/// Bytes of the trampoline's page: its code first, then at
/// [`TRAMPOLINE_LIST`] the ranges it unmaps. Mapped with this length on
/// every host (the kernel rounds it up to its page size).
pub const TRAMPOLINE_PAGE: usize = 4096;

/// Where the list of ranges starts in the trampoline's page.
const TRAMPOLINE_LIST: usize = 512;

// The longest list fits the page: checked when building.
const _: () = assert!(TRAMPOLINE_LIST + MAX_UNMAPS * 16 <= TRAMPOLINE_PAGE);

/// A copy of the trampoline code and its list, in an executable page of
/// its own at an address the kernel chose.
struct Trampoline {
    page: usize,
    count: usize,
}

// The trampoline: unmaps a list of ranges, then starts the emulator. It is
// never run where it is linked (in the interpreter's text, which it
// unmaps), only from a copy made by `Trampoline::new`: position-
// independent, it reads nothing but its registers and its own page, and
// uses no stack. In: the emulator's stack pointer, its entry point, the
// address of the (start, length) pairs and their count (x86_64: rdi, rsi,
// rdx, rcx; aarch64: x0–x3). A failed munmap ends the process (exit 126)
// after one line on stderr: the promise that nothing of the file is left
// cannot be kept, and the stack block is already rewritten.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.qemu_shim_trampoline,\"ax\",@progbits",
    ".p2align 4",
    ".globl qemu_shim_trampoline",
    ".hidden qemu_shim_trampoline",
    "qemu_shim_trampoline:",
    "mov r12, rdi",
    "mov r13, rsi",
    "mov r14, rdx",
    "mov r15, rcx",
    "2:",
    "test r15, r15",
    "jz 3f",
    "mov eax, 11", // munmap
    "mov rdi, [r14]",
    "mov rsi, [r14 + 8]",
    "syscall",
    "test rax, rax",
    "jnz 4f",
    "add r14, 16",
    "dec r15",
    "jmp 2b",
    "3:",
    "mov rsp, r12",
    "xor ebp, ebp",
    "xor edx, edx",
    "jmp r13",
    "4:",
    "mov eax, 1", // write
    "mov edi, 2",
    "lea rsi, [rip + 5f]",
    "lea rdx, [rip + 6f]",
    "sub rdx, rsi",
    "syscall",
    "mov eax, 231", // exit_group
    "mov edi, 126",
    "syscall",
    "ud2",
    "5:",
    ".ascii \"qemu-shim: cannot unmap the interpreter file before a setuid program\\n\"",
    "6:",
    ".globl qemu_shim_trampoline_end",
    ".hidden qemu_shim_trampoline_end",
    "qemu_shim_trampoline_end:",
    ".popsection",
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".pushsection .text.qemu_shim_trampoline,\"ax\",%progbits",
    ".p2align 4",
    ".globl qemu_shim_trampoline",
    ".hidden qemu_shim_trampoline",
    "qemu_shim_trampoline:",
    "mov x19, x0",
    "mov x20, x1",
    "mov x21, x2",
    "mov x22, x3",
    "2:",
    "cbz x22, 3f",
    "mov x8, #215", // munmap
    "ldp x0, x1, [x21], #16",
    "svc #0",
    "cbnz x0, 4f",
    "sub x22, x22, #1",
    "b 2b",
    "3:",
    "mov sp, x19",
    "mov x16, x20",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, #0",
    "br x16",
    "4:",
    "mov x8, #64", // write
    "mov x0, #2",
    "adr x1, 5f",
    "adr x2, 6f",
    "sub x2, x2, x1",
    "svc #0",
    "mov x8, #94", // exit_group
    "mov x0, #126",
    "svc #0",
    "udf #0",
    "5:",
    ".ascii \"qemu-shim: cannot unmap the interpreter file before a setuid program\\n\"",
    "6:",
    ".p2align 2",
    ".globl qemu_shim_trampoline_end",
    ".hidden qemu_shim_trampoline_end",
    "qemu_shim_trampoline_end:",
    ".popsection",
);

/// The trampoline's code, as linked into the interpreter.
fn trampoline_code() -> &'static [u8] {
    let start = address_of!("qemu_shim_trampoline");
    let end = address_of!("qemu_shim_trampoline_end");
    // SAFETY: both symbols are defined by the `global_asm!` above around
    // the trampoline's bytes, in this program's mapped, readable text;
    // `end` follows `start` in the same section.
    unsafe { core::slice::from_raw_parts(start as *const u8, end.saturating_sub(start)) }
}

/// Makes `[start, end)`, just written as data, safe to execute on aarch64,
/// whose instruction cache does not snoop data writes: clean the data
/// cache to the point of unification, invalidate the instruction cache
/// there, and synchronise (the sequence the Arm ARM gives for
/// self-modifying code, with the line sizes read from CTR_EL0, which
/// Linux lets user space read).
#[cfg(target_arch = "aarch64")]
fn sync_instruction_cache(start: usize, end: usize) {
    let ctr: usize;
    // SAFETY: reads CTR_EL0, which Linux allows at EL0 (or emulates).
    unsafe { core::arch::asm!("mrs {c}, ctr_el0", c = out(reg) ctr, options(nomem, nostack)) };
    let dline = 4usize << ((ctr >> 16) & 0xf);
    let iline = 4usize << (ctr & 0xf);
    let mut a = start & !(dline - 1);
    while a < end {
        // SAFETY: cleans a cache line of the trampoline's page, mapped and
        // readable; changes no memory contents.
        unsafe { core::arch::asm!("dc cvau, {a}", a = in(reg) a, options(nostack)) };
        a += dline;
    }
    // SAFETY: a barrier; touches no memory.
    unsafe { core::arch::asm!("dsb ish", options(nostack)) };
    let mut a = start & !(iline - 1);
    while a < end {
        // SAFETY: invalidates an instruction cache line of the trampoline's
        // page, mapped and readable.
        unsafe { core::arch::asm!("ic ivau, {a}", a = in(reg) a, options(nostack)) };
        a += iline;
    }
    // SAFETY: barriers; touch no memory.
    unsafe { core::arch::asm!("dsb ish", "isb", options(nostack)) };
}

#[cfg(target_arch = "x86_64")]
fn sync_instruction_cache(_start: usize, _end: usize) {
    // x86 keeps instruction fetches coherent with data writes; the jump
    // to the page is enough.
}

impl Trampoline {
    /// Copies the trampoline and `unmaps` into a fresh page at an address
    /// the kernel chooses, then makes it read+execute (never writable and
    /// executable at once). The error of a refused mprotect is returned
    /// as is (see [`executable_page_refused`]), the page unmapped again.
    fn new(unmaps: &Unmaps) -> Result<Trampoline, Errno> {
        let code = trampoline_code();
        let list = unmaps.ranges();
        if code.len() > TRAMPOLINE_LIST || TRAMPOLINE_LIST + list.len() * 16 > TRAMPOLINE_PAGE {
            return Err(Errno::E2BIG);
        }
        let page = map_zeroed(TRAMPOLINE_PAGE)?;
        // SAFETY: `page` is a fresh, writable mapping of TRAMPOLINE_PAGE
        // bytes that nothing else refers to; the code fits before
        // TRAMPOLINE_LIST and the list after it (checked above); the list
        // is 8-byte aligned (a page plus 512).
        unsafe {
            core::ptr::copy_nonoverlapping(code.as_ptr(), page as *mut u8, code.len());
            let words = (page + TRAMPOLINE_LIST) as *mut usize;
            for (i, (start, len)) in list.iter().enumerate() {
                words.add(2 * i).write(*start);
                words.add(2 * i + 1).write(*len);
            }
        }
        sync_instruction_cache(page, page + code.len());
        // The page just mapped holds only the code and list written above.
        if let Err(e) = mprotect(
            page,
            TRAMPOLINE_PAGE,
            qemu_shim_registry_core::dispatch::PROT_READ
                | qemu_shim_registry_core::dispatch::PROT_EXEC,
        ) {
            // SAFETY: unmaps the page just mapped, which nothing refers to.
            unsafe { syscall6(nr::MUNMAP, [page, TRAMPOLINE_PAGE, 0, 0, 0, 0]) };
            return Err(e);
        }
        Ok(Trampoline {
            page,
            count: list.len(),
        })
    }
}

/// Enters the trampoline copy `t`: it unmaps its list of ranges, switches
/// to `sp` and jumps to `entry`.
///
/// # Safety
/// - `t` must have been made by [`Trampoline::new`] and its page left as
///   it was;
/// - `sp` and `entry` as for [`jump`], and neither the stack block nor the
///   code at `entry` (nor anything it needs) may lie in the listed ranges;
/// - nothing of this program may run after the ranges are gone: the call
///   never returns, and the trampoline reads only its registers and its
///   own page.
unsafe fn enter_trampoline(t: &Trampoline, sp: *mut usize, entry: usize) -> ! {
    let list = t.page + TRAMPOLINE_LIST;
    // SAFETY: per the caller's contract; the trampoline neither returns
    // nor uses the stack until it switches to `sp`.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!(
            "jmp {code}",
            code = in(reg) t.page,
            in("rdi") sp,
            in("rsi") entry,
            in("rdx") list,
            in("rcx") t.count,
            options(noreturn),
        );
    }
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!(
            "br x16",
            in("x16") t.page,
            in("x0") sp,
            in("x1") entry,
            in("x2") list,
            in("x3") t.count,
            options(noreturn),
        );
    }
}

/// Starts the carried emulator as the kernel would start a binfmt_misc
/// interpreter: its segments get their protections, the kernel's stack
/// block is rewritten in place (argv gains `--` after `argv[0]`, `-cpu
/// MODEL` before it with [`Launch::cpu`], and the program's path may be
/// replaced: see [`Launch::program`]; auxv tells the
/// emulator's program headers and entry, AT_EXECFD and AT_FLAGS), and
/// control jumps to its entry point. Returns only if a protection cannot be
/// set or there is no kernel stack; nothing is changed in the stack block
/// before the point of no return.
pub fn launch(p: &Process<'_>, l: &Launch<'_>) -> Errno {
    let Some(stack) = &p.stack else {
        return Errno::EBADF;
    };
    if p.argv.len() < 2 {
        // Unreachable: `invocation` needs argv[1].
        return Errno::E2BIG;
    }
    let c = l.carried;
    let fixed = load_base().wrapping_add(c.image as usize);
    let mut image = fixed;
    // A setuid exec keeps nothing of the file but the running emulator:
    // the trampoline unmaps the rest after the stack is rewritten. Set up
    // before the image moves, so that neither its page nor the moved
    // image can be placed in the hole the move leaves.
    let trampoline = if l.randomize {
        match secure_trampoline(&p.aux, c, fixed) {
            Ok(t) => Some(t),
            Err(e) if executable_page_refused(e) => None,
            Err(e) => return e,
        }
    } else {
        None
    };
    let moved = l.randomize && c.span != 0;
    if moved {
        match move_to_random(image, c.span as usize) {
            Ok(at) => image = at,
            Err(e) => return e,
        }
    }
    for seg in c.segments() {
        if let Err(e) = mprotect(image + seg.offset as usize, seg.len as usize, seg.prot) {
            return e;
        }
    }
    if moved {
        for fix in c.fixes() {
            let writable = c.segments().iter().any(|s| {
                s.prot & qemu_shim_registry_core::dispatch::PROT_WRITE != 0
                    && s.offset <= fix.offset
                    && fix.offset + 8 <= s.offset + s.len
            });
            if !writable || fix.offset % 8 != 0 {
                return Errno::ENOEXEC;
            }
            // SAFETY: the word lies inside a segment of the image just made
            // writable (checked above), aligned, and nothing else in this
            // program refers to the image.
            unsafe { ((image + fix.offset as usize) as *mut u64).write(fix.value) };
        }
    }
    let has_execfd = p.aux.execfd.is_some();
    let program = l
        .program
        .filter(|p| p.to_bytes_with_nul().len() <= PATH_MAX);
    // Without the P layout the emulator would take argv[1], the path, for
    // argv0: keep the kernel's there when the path is replaced.
    let keep_argv0 = program.is_some() && !l.preserve_argv0;
    let entry = image + c.entry as usize;
    let plan = Rewrite {
        edits: AuxEdits {
            phdr: image + c.phdr as usize,
            phnum: usize::from(c.phnum),
            entry,
            flags: usize::from(l.preserve_argv0 || keep_argv0),
            execfd: l.execfd as usize,
        },
        drop_env: l.drop_env,
        add_execfd: (!has_execfd).then_some(l.execfd as usize),
        program,
        keep_argv0,
        cpu: l.cpu.filter(|c| c.to_bytes_with_nul().len() <= MAX_CPU),
    };
    if plan.shift() * 8 > GAP {
        // Unreachable: GAP is sized for the most a plan can hold.
        return Errno::E2BIG;
    }
    // --- Point of no return: from here on the stack block is rewritten and
    // the emulator runs.
    //
    // SAFETY: `stack` was read once from the kernel's initial stack by
    // `process_from_stack` (its `words` counted there), and `_start` left
    // `GAP` bytes below it unused, at least `plan.shift()` words (checked
    // above); argc >= 2 (checked above). `entry` is the carried emulator's
    // entry point, in an image whose segments were just given their
    // protections; the emulator takes the block as its own start block.
    // The trampoline's ranges are the file's own segments minus the
    // running image's place (`secure_trampoline`): the stack block and the
    // image (moved out of that place, or still in it) are not in them.
    unsafe {
        let sp = rewrite_stack(stack.sp, stack.words, &plan);
        match &trampoline {
            Some(t) => enter_trampoline(t, sp, entry),
            None => jump(sp, entry),
        }
    }
}

/// The trampoline for a setuid exec of carried image `c` (its place in
/// the file's mapping at `fixed`): the file's own segments, read from
/// its program headers, minus that place.
fn secure_trampoline(aux: &Aux, c: &Carried, fixed: usize) -> Result<Trampoline, Errno> {
    let extent = if c.span != 0 {
        c.span
    } else {
        c.segments()
            .iter()
            .map(|s| s.offset.saturating_add(s.len))
            .max()
            .unwrap_or(0)
    };
    let end = fixed.checked_add(extent as usize).ok_or(Errno::ENOEXEC)?;
    let (loads, n) = own_loads(aux)?;
    let plan = plan_unmaps(
        loads.get(..n).unwrap_or(&[]),
        load_base(),
        aux.pagesz,
        (fixed, end),
    )?;
    Trampoline::new(&plan)
}

/// How [`rewrite_stack`] rewrites the kernel's stack block for a carried
/// emulator.
struct Rewrite<'a> {
    /// Auxv values the emulator gets instead of the interpreter's.
    edits: AuxEdits,
    /// Environment entries (`NAME=value` bytes) to leave out.
    drop_env: fn(&[u8]) -> bool,
    /// An AT_EXECFD pair to add, when the kernel gave none.
    add_execfd: Option<usize>,
    /// The path to give the emulator instead of argv[1], at most
    /// [`PATH_MAX`] bytes with its NUL.
    program: Option<&'a CStr>,
    /// Keep the kernel's argv[1] after `program`, as argv0.
    keep_argv0: bool,
    /// `-cpu` and this model before `--`, at most [`MAX_CPU`] bytes with
    /// its NUL.
    cpu: Option<&'a CStr>,
}

impl Rewrite<'_> {
    /// Words inserted into argv and auxv.
    fn inserted(&self) -> usize {
        1 + usize::from(self.keep_argv0)
            + if self.add_execfd.is_some() { 2 } else { 0 }
            + if self.cpu.is_some() { 2 } else { 0 }
    }

    /// Bytes of the CPU option and model, if any.
    fn cpu_bytes(&self) -> usize {
        self.cpu
            .map_or(0, |c| CPU_OPTION.len() + c.to_bytes_with_nul().len())
    }

    /// Bytes of the strings placed after the block: `--`, then `-cpu` and
    /// the model, then `program`.
    fn string_bytes(&self) -> usize {
        END_OF_OPTIONS.len()
            + self.cpu_bytes()
            + self.program.map_or(0, |p| p.to_bytes_with_nul().len())
    }

    /// Words the block moves down: room for the inserted words and the
    /// strings, rounded up to keep the stack pointer 16-byte aligned, as
    /// the ABI requires at entry.
    fn shift(&self) -> usize {
        (self.inserted() + self.string_bytes().div_ceil(8)).next_multiple_of(2)
    }
}

/// Rewrites the kernel's stack block at `old` (`words` long, auxv's
/// AT_NULL pair included) for the emulator and returns the new block's
/// start, the emulator's initial stack pointer: argv gains `--` after
/// `argv[0]` (`-cpu MODEL --` with `plan.cpu`) and, with `plan.program`,
/// argv[1] becomes that path (with
/// `plan.keep_argv0`, the old argv[1] follows it); envp loses what
/// `plan.drop_env` rejects; auxv values are edited by `plan.edits`, and
/// `plan.add_execfd` is added as AT_EXECFD.
///
/// The block is rewritten front to back into a block starting
/// `plan.shift()` words lower, each word read before any write can reach
/// it: the write position trails the read position by the shift minus the
/// words inserted so far, which never goes below zero. The new argv, envp
/// and auxv therefore hold exactly the kernel's pointers and values with
/// the stated edits, terminated as the kernel terminates them. Then the
/// strings new argv slots point to, `--`, `-cpu` and the model, and the
/// program's path, are
/// copied right after the longest block the rewrite can produce, still
/// below `old + words` (the shift leaves room for them), which was all
/// read by then: they live in the emulator's stack block, above its stack
/// pointer, where nothing else writes.
///
/// # Safety
/// - `old` must point to a process start block as the kernel lays it out
///   (argc >= 2, argv, NULL, envp, NULL, auxv pairs, AT_NULL), `words`
///   words long, with at least `plan.shift()` writable words below it
///   that nothing else uses, and every argv and envp pointer must point
///   to a NUL-terminated string;
/// - `plan.program` and `plan.cpu`, if any, must not lie in the block or
///   the words below it.
unsafe fn rewrite_stack(old: *mut usize, words: usize, plan: &Rewrite<'_>) -> *mut usize {
    let shift = plan.shift();
    // SAFETY: every read and write below stays within the block the
    // caller's contract describes (the kernel's layout, walked to its
    // terminators) and the `shift` words below it; see the doc above for
    // why no write overtakes a read, and why the strings fit between the
    // new block's end and `old + words`.
    unsafe {
        let new = old.sub(shift);
        let strings = new.add(words + plan.inserted()).cast::<u8>();
        let dashes = strings;
        let cpu_option = dashes.add(END_OF_OPTIONS.len());
        let model = cpu_option.add(CPU_OPTION.len());
        let path = strings.add(END_OF_OPTIONS.len() + plan.cpu_bytes());
        let argc = *old;
        let mut r = 1usize; // read index, in words from `old`
        let mut w = 1usize; // write index, in words from `new`
        let cpu_words = if plan.cpu.is_some() { 2 } else { 0 };
        new.write(argc + 1 + usize::from(plan.keep_argv0) + cpu_words);
        // argv[0], "-cpu" and the model, "--", the program's path (argv[1]
        // or ours, with the kernel's after it as argv0), the rest of argv
        // and its null.
        new.add(w).write(*old.add(r));
        w += 1;
        r += 1;
        if plan.cpu.is_some() {
            new.add(w).write(cpu_option as usize);
            new.add(w + 1).write(model as usize);
            w += 2;
        }
        new.add(w).write(dashes as usize);
        w += 1;
        let given = *old.add(r);
        r += 1;
        new.add(w)
            .write(plan.program.map_or(given, |_| path as usize));
        w += 1;
        if plan.keep_argv0 {
            new.add(w).write(given);
            w += 1;
        }
        while r <= argc + 1 {
            new.add(w).write(*old.add(r));
            w += 1;
            r += 1;
        }
        // envp, without what `drop_env` rejects, and its null.
        loop {
            let e = *old.add(r);
            r += 1;
            if e == 0 {
                break;
            }
            if !(plan.drop_env)(CStr::from_ptr(e as *const core::ffi::c_char).to_bytes()) {
                new.add(w).write(e);
                w += 1;
            }
        }
        new.add(w).write(0);
        w += 1;
        // auxv pairs, edited; AT_EXECFD added before AT_NULL if missing.
        loop {
            let key = *old.add(r);
            let value = *old.add(r + 1);
            r += 2;
            if key == AT_NULL {
                break;
            }
            let value = plan.edits.apply(key, value);
            new.add(w).write(key);
            new.add(w + 1).write(value);
            w += 2;
        }
        if let Some(fd) = plan.add_execfd {
            new.add(w).write(AT_EXECFD);
            new.add(w + 1).write(fd);
            w += 2;
        }
        new.add(w).write(AT_NULL);
        new.add(w + 1).write(0);
        // The strings, now that the whole block has been read.
        core::ptr::copy_nonoverlapping(END_OF_OPTIONS.as_ptr(), dashes, END_OF_OPTIONS.len());
        if let Some(c) = plan.cpu {
            core::ptr::copy_nonoverlapping(CPU_OPTION.as_ptr(), cpu_option, CPU_OPTION.len());
            let c = c.to_bytes_with_nul();
            core::ptr::copy_nonoverlapping(c.as_ptr(), model, c.len());
        }
        if let Some(p) = plan.program {
            let p = p.to_bytes_with_nul();
            core::ptr::copy_nonoverlapping(p.as_ptr(), path, p.len());
        }
        new
    }
}

/// Switches to `sp` and jumps to `entry`.
///
/// # Safety
/// `sp` must hold a process start block and `entry` be the entry point of
/// code that expects one.
unsafe fn jump(sp: *mut usize, entry: usize) -> ! {
    // SAFETY: per the caller's contract; nothing returns here.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        core::arch::asm!(
            "mov rsp, rcx",
            "xor ebp, ebp",
            "xor edx, edx",
            "jmp rax",
            // Fixed registers the code does not clear: with `in(reg)` the
            // compiler could pick rdx for `entry` and the jump would go to 0.
            in("rcx") sp,
            in("rax") entry,
            options(noreturn),
        );
    }
    // SAFETY: as above.
    #[cfg(target_arch = "aarch64")]
    unsafe {
        core::arch::asm!(
            "mov sp, x17",
            "mov x29, #0",
            "mov x30, #0",
            "mov x0, #0",
            "br x16",
            // As above: not x0 or x30, which the code clears.
            in("x17") sp,
            in("x16") entry,
            options(noreturn),
        );
    }
}

/// Reads argc, argv, envp and auxv from the initial stack.
///
/// # Safety
/// `sp` must be the stack pointer the kernel gave `_start`.
pub unsafe fn process_from_stack(sp: *const usize) -> Process<'static> {
    // SAFETY: the caller passes the kernel's initial stack pointer, below
    // which nothing has been pushed; the kernel lays out argc, the argv
    // pointers and a null, the envp pointers and a null, then the auxv pairs
    // ending with AT_NULL. Every read below stays within that layout.
    unsafe {
        let argc = *sp;
        let argv = sp.add(1) as *const *const u8;
        let envp = argv.add(argc + 1);
        let mut envc = 0;
        while !(*envp.add(envc)).is_null() {
            envc += 1;
        }
        let auxv = envp.add(envc + 1) as *const usize;
        let mut auxc = 0;
        while *auxv.add(2 * auxc) != AT_NULL {
            auxc += 1;
        }
        let pairs = (0..auxc).map(|i| (*auxv.add(2 * i), *auxv.add(2 * i + 1)));
        Process {
            argv: CStrArray::new(argv, argc),
            envp: CStrArray::new(envp, envc),
            aux: Aux::parse(pairs),
            stack: Some(Stack {
                sp: sp as *mut usize,
                // argc, argv and its null, envp and its null, the auxv
                // pairs and AT_NULL's.
                words: 1 + argc + 1 + envc + 1 + 2 * (auxc + 1),
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::CStrArray;
    use core::ffi::CStr;

    /// Holds pointers to `strs` plus a null, for building a [`CStrArray`].
    pub struct Owned {
        ptrs: [*const u8; 32],
        len: usize,
    }

    impl Owned {
        pub fn new(strs: &[&'static CStr]) -> Owned {
            assert!(strs.len() < 32);
            let mut ptrs = [core::ptr::null(); 32];
            for (slot, s) in ptrs.iter_mut().zip(strs) {
                *slot = s.as_ptr().cast();
            }
            Owned {
                ptrs,
                len: strs.len(),
            }
        }
        pub fn array(&self) -> CStrArray<'_> {
            // SAFETY: `ptrs` holds `len` pointers to 'static C strings then
            // nulls, and lives as long as the returned borrow.
            unsafe { CStrArray::new(self.ptrs.as_ptr(), self.len) }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::vec::Vec;

    fn drop_qemu(e: &[u8]) -> bool {
        e.starts_with(b"QEMU_")
    }

    const AT_EXECFN: usize = 31;
    /// What the test's memory holds where nothing may be written.
    const UNTOUCHED: usize = 0xdead;

    /// A start block laid out as the kernel does, high in `mem` (above it:
    /// words the rewrite must leave alone), after `rewrite_stack`.
    struct Rewritten {
        mem: Vec<usize>,
        /// Where the kernel's block was, and its length, in words.
        old: usize,
        words: usize,
        /// Where the emulator's block starts.
        new: usize,
    }

    fn rewritten(
        argv: &[&CStr],
        envp: &[&CStr],
        auxv: &[(usize, usize)],
        plan: &Rewrite,
    ) -> Rewritten {
        let mut block = std::vec![argv.len()];
        block.extend(argv.iter().map(|s| s.as_ptr() as usize));
        block.push(0);
        block.extend(envp.iter().map(|s| s.as_ptr() as usize));
        block.push(0);
        for (k, v) in auxv.iter().chain(&[(AT_NULL, 0)]) {
            block.extend([*k, *v]);
        }
        let old = GAP / 8;
        let mut mem = std::vec![UNTOUCHED; old + block.len() + 8];
        mem[old..old + block.len()].copy_from_slice(&block);
        assert!(plan.shift() * 8 <= GAP);
        let base = mem.as_mut_ptr();
        // SAFETY: `mem[old..]` holds a start block `block.len()` words
        // long whose pointers point to live C strings, argc >= 2, with GAP
        // bytes (at least `plan.shift()` words, asserted) of unused words
        // below it; the program's path is not in `mem`.
        let new = unsafe { rewrite_stack(base.add(old), block.len(), plan).offset_from(base) };
        Rewritten {
            mem,
            old,
            words: block.len(),
            new: new as usize,
        }
    }

    impl Rewritten {
        /// The rewritten block, read as a process start block.
        fn process(&self) -> Process<'_> {
            // SAFETY: `rewrite_stack` left a start block at `new` whose
            // pointers point to live C strings (the test's, or its own,
            // inside `mem`).
            unsafe { process_from_stack(self.mem.as_ptr().add(self.new)) }
        }

        /// Whether `s` lies in the emulator's stack block, after its argv,
        /// envp and auxv (`new_words`) and before the end of the kernel's
        /// block.
        fn in_block(&self, s: &CStr, new_words: usize) -> bool {
            let word = |i: usize| self.mem.as_ptr() as usize + 8 * i;
            let at = s.as_ptr() as usize;
            at >= word(self.new + new_words)
                && at + s.to_bytes_with_nul().len() <= word(self.old + self.words)
        }
    }

    /// The installed file's layout (x86_64, pre-relocated at a fixed
    /// address): read-only, code, data and bss, a 60 KiB alignment gap,
    /// then the carried segment holding two images.
    const LOADS: [Load; 4] = [
        Load {
            offset: 0,
            vaddr: 0x3fb4_7f40_0000,
            memsz: 0x747c,
        },
        Load {
            offset: 0x7480,
            vaddr: 0x3fb4_7f40_8480,
            memsz: 0x5a69,
        },
        Load {
            offset: 0xcef0,
            vaddr: 0x3fb4_7f40_eef0,
            memsz: 0x2110,
        },
        Load {
            offset: 0x10000,
            vaddr: 0x3fb4_7f42_0000,
            memsz: 0x178_0000,
        },
    ];

    #[test]
    fn a_setuid_exec_unmaps_exactly_the_files_segments_but_the_running_image() {
        let base = 0x3fb4_7f40_0000;
        // The second image runs: [0x3fb4_7fa0_0000, + 0x90_0000 + a page
        // fraction, widened to the page).
        let keep = (0x3fb4_7fa0_0000, 0x3fb4_802f_f800);
        let plan = plan_unmaps(&LOADS, base, 4096, keep).unwrap();
        assert_eq!(
            plan.ranges(),
            [
                (0x3fb4_7f40_0000, 0x8000),
                (0x3fb4_7f40_8000, 0x6000),
                (0x3fb4_7f40_e000, 0x3000),
                // Not the gap [.._1000, .._2_0000): only the segments.
                (0x3fb4_7f42_0000, 0x5e_0000),
                (0x3fb4_8030_0000, 0x3fb4_80ba_0000 - 0x3fb4_8030_0000),
            ]
        );
        // The same file loaded elsewhere (a position-independent install,
        // segments from 0): the same ranges, shifted.
        let pie: Vec<Load> = LOADS
            .iter()
            .map(|l| Load {
                vaddr: l.vaddr - base as u64,
                ..*l
            })
            .collect();
        let moved = 0x7f00_0000_0000;
        let shifted = plan_unmaps(
            &pie,
            moved,
            4096,
            (keep.0 - base + moved, keep.1 - base + moved),
        )
        .unwrap();
        let want: Vec<_> = plan
            .ranges()
            .iter()
            .map(|(s, l)| (s - base + moved, *l))
            .collect();
        assert_eq!(shifted.ranges(), want);
        // The first image: nothing of the carried segment before it.
        let first = plan_unmaps(&LOADS, base, 4096, (0x3fb4_7f43_0000, 0x3fb4_7f9f_0000)).unwrap();
        assert_eq!(first.ranges().len(), 5);
        assert_eq!(first.ranges()[3], (0x3fb4_7f42_0000, 0x1_0000));
        // 64 KiB pages: the segments round out to them.
        let big = plan_unmaps(&LOADS, base, 0x1_0000, keep).unwrap();
        assert_eq!(big.ranges()[0], (0x3fb4_7f40_0000, 0x1_0000));
    }

    #[test]
    fn an_unexpected_layout_is_refused_not_guessed() {
        let base = 0x3fb4_7f40_0000;
        let keep = (0x3fb4_7fa0_0000, 0x3fb4_8030_0000);
        let e = |loads: &[Load], page, keep| plan_unmaps(loads, base, page, keep).unwrap_err();
        // No segment holds the ELF header.
        assert_eq!(e(&LOADS[1..], 4096, keep), Errno::ENOEXEC);
        // Not a page size.
        assert_eq!(e(&LOADS, 0, keep), Errno::ENOEXEC);
        assert_eq!(e(&LOADS, 3000, keep), Errno::ENOEXEC);
        // The image is not inside one segment, or in none.
        assert_eq!(
            e(&LOADS, 4096, (0x3fb4_80b0_0000, 0x3fb4_80d0_0000)),
            Errno::ENOEXEC
        );
        assert_eq!(e(&LOADS, 4096, (0x1000, 0x2000)), Errno::ENOEXEC);
        // Addresses that wrap.
        let wraps = [Load {
            offset: 0,
            vaddr: u64::MAX - 10,
            memsz: 100,
        }];
        assert_eq!(e(&wraps, 4096, keep), Errno::ENOEXEC);
        // More segments than the list holds.
        let mut many = std::vec![LOADS[0]; MAX_UNMAPS];
        many.push(LOADS[3]);
        assert_eq!(e(&many, 4096, keep), Errno::E2BIG);
    }

    // What `trampoline_landed` checks, set by the test before it forks.
    static LANDED_SP: AtomicUsize = AtomicUsize::new(0);
    static GONE: [AtomicUsize; 4] = [const { AtomicUsize::new(0) }; 4];
    static KEPT: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];

    // Where the test's trampoline jumps: passes the stack pointer it was
    // given and the register a C library's _start reads as its exit
    // handler (rdx, x0) to `trampoline_landed`, with the stack aligned as
    // a call leaves it.
    #[cfg(target_arch = "x86_64")]
    core::arch::global_asm!(
        ".globl qemu_shim_test_landed",
        "qemu_shim_test_landed:",
        "mov rdi, rsp",
        "mov rsi, rdx",
        "call {landed}",
        "ud2",
        landed = sym trampoline_landed,
    );
    #[cfg(target_arch = "aarch64")]
    core::arch::global_asm!(
        ".globl qemu_shim_test_landed",
        "qemu_shim_test_landed:",
        "mov x1, x0",
        "mov x0, sp",
        "bl {landed}",
        "udf #0",
        landed = sym trampoline_landed,
    );

    /// Whether `[start, start + len)` is unmapped: msync says ENOMEM.
    fn unmapped(start: usize, len: usize) -> bool {
        #[cfg(target_arch = "x86_64")]
        const MSYNC: usize = 26;
        #[cfg(target_arch = "aarch64")]
        const MSYNC: usize = 227;
        const MS_ASYNC: usize = 1;
        // SAFETY: msync only looks the range up; it writes nothing of ours.
        let r = unsafe { syscall6(MSYNC, [start, len, MS_ASYNC, 0, 0, 0]) };
        check(r) == Err(Errno::ENOMEM)
    }

    /// Runs in the forked child after the trampoline: exits 42 if the
    /// stack pointer and the exit-handler register are as the emulator
    /// must get them, the listed ranges are gone and the kept one is not.
    extern "C" fn trampoline_landed(sp: usize, fini: usize) -> ! {
        let at = |a: &[AtomicUsize], i: usize| a[i].load(Ordering::SeqCst);
        let ok = sp == LANDED_SP.load(Ordering::SeqCst)
            && fini == 0
            && unmapped(at(&GONE, 0), at(&GONE, 1))
            && unmapped(at(&GONE, 2), at(&GONE, 3))
            && !unmapped(at(&KEPT, 0), at(&KEPT, 1));
        exit(if ok { 42 } else { 1 })
    }

    /// The trampoline itself, run: copied to its page (on aarch64 with the
    /// cache maintenance, under qemu-aarch64 by scripts/aarch64-host/run),
    /// it unmaps exactly its list and starts the entry point on the given
    /// stack. In a forked child, which it ends.
    #[test]
    fn the_trampoline_unmaps_its_list_then_jumps_to_the_entry_on_the_new_stack() {
        const PAGE: usize = 4096;
        extern "C" {
            fn qemu_shim_test_landed();
        }
        // Five pages standing for a file's segment: the middle two are the
        // running image's place, the rest goes.
        let area = map_zeroed(5 * PAGE).unwrap();
        let load = [Load {
            offset: 0,
            vaddr: 0,
            memsz: 5 * PAGE as u64,
        }];
        let plan = plan_unmaps(&load, area, PAGE, (area + PAGE, area + 3 * PAGE)).unwrap();
        assert_eq!(plan.ranges(), [(area, PAGE), (area + 3 * PAGE, 2 * PAGE)]);
        for (i, v) in [area, PAGE, area + 3 * PAGE, 2 * PAGE]
            .into_iter()
            .enumerate()
        {
            GONE[i].store(v, Ordering::SeqCst);
        }
        KEPT[0].store(area + PAGE, Ordering::SeqCst);
        KEPT[1].store(2 * PAGE, Ordering::SeqCst);
        let stack = map_zeroed(4 * PAGE).unwrap();
        let sp = stack + 3 * PAGE; // 16-byte aligned, as at a process start
        LANDED_SP.store(sp, Ordering::SeqCst);
        let entry = qemu_shim_test_landed as *const () as usize;
        #[cfg(target_arch = "x86_64")]
        let (clone, wait4) = (56usize, 61usize);
        #[cfg(target_arch = "aarch64")]
        let (clone, wait4) = (220usize, 260usize);
        const SIGCHLD: usize = 17;
        // SAFETY: clone with SIGCHLD and no stack is fork: the child gets
        // a copy of this process with only this thread, and below runs
        // nothing but raw syscalls and the trampoline, which never return.
        let pid = check(unsafe { syscall6(clone, [SIGCHLD, 0, 0, 0, 0, 0]) }).unwrap();
        if pid == 0 {
            match Trampoline::new(&plan) {
                // SAFETY: `t` is fresh; `sp` lies in a mapping of our own
                // that is not listed, as does the entry (in the test
                // binary's text), which expects exactly this.
                Ok(t) => unsafe { enter_trampoline(&t, sp as *mut usize, entry) },
                Err(_) => exit(2),
            }
        }
        let mut status = 0i32;
        // SAFETY: `status` is a live, writable int.
        let r = unsafe { syscall6(wait4, [pid, &mut status as *mut i32 as usize, 0, 0, 0, 0]) };
        assert_eq!(check(r), Ok(pid));
        assert_eq!(status, 42 << 8, "child status {status:#x}");
    }

    #[test]
    fn only_a_refused_executable_page_falls_back() {
        assert!(executable_page_refused(Errno::EACCES));
        assert!(executable_page_refused(Errno::EPERM));
        assert!(!executable_page_refused(Errno::ENOMEM));
        assert!(!executable_page_refused(Errno::EINVAL));
    }

    /// The trampoline's code fits before its list, message included.
    #[test]
    fn the_trampoline_fits_its_page() {
        let code = trampoline_code();
        assert!(
            code.len() > 16 && code.len() <= TRAMPOLINE_LIST,
            "{}",
            code.len()
        );
        let msg = b"qemu-shim: cannot unmap the interpreter file before a setuid program\n";
        assert!(code.windows(msg.len()).any(|w| w == msg));
    }

    fn strings<'a>(a: &CStrArray<'a>) -> Vec<&'a [u8]> {
        a.iter_from(0).map(CStr::to_bytes).collect()
    }

    fn plan<'a>(
        program: Option<&'a CStr>,
        keep_argv0: bool,
        add_execfd: Option<usize>,
        cpu: Option<&'a CStr>,
    ) -> Rewrite<'a> {
        Rewrite {
            edits: AuxEdits {
                phdr: 0x1000,
                phnum: 9,
                entry: 0x2000,
                flags: 1,
                execfd: 5,
            },
            drop_env: drop_qemu,
            add_execfd,
            program,
            keep_argv0,
            cpu,
        }
    }

    /// Every shape of rewrite, the longest path included: the emulator's
    /// argv, envp and auxv are the kernel's with the edits, and the strings
    /// its argv gains (`--`, the program's path) live in its stack block,
    /// not in the interpreter's image (which a setuid exec may unmap).
    #[test]
    fn the_emulators_block_and_its_strings_fit_in_the_kernels_block_and_the_gap() {
        let kernel_argv = [c"/interp", c"./prog", c"prog", c"arg"];
        let envp = [c"PATH=/bin", c"QEMU_STRACE=1", c"HOME=/"];
        // The kernel gives AT_EXECFD with flag O; else the rewrite adds it.
        let auxv = [
            (AT_PAGESZ, 4096),
            (AT_PHDR, 7),
            (AT_EXECFN, 11),
            (AT_FLAGS, 0),
        ];
        let with_fd = [(AT_PAGESZ, 4096), (AT_EXECFD, 3), (AT_FLAGS, 0)];
        let mut longest = std::vec![b'/'];
        longest.resize(PATH_MAX - 1, b'a');
        longest.push(0);
        let longest = CStr::from_bytes_with_nul(&longest).unwrap();
        let mut model = std::vec![b'm'; MAX_CPU - 1];
        model.push(0);
        let longest_model = CStr::from_bytes_with_nul(&model).unwrap();
        for (program, keep, fd, cpu) in [
            (None, false, None, None),
            (None, false, Some(5), None),
            (Some(c"/work/d/prog"), false, None, None),
            (Some(c"/work/d/prog"), true, Some(5), None),
            (Some(longest), false, None, None),
            (Some(longest), true, Some(5), None),
            (None, false, None, Some(c"arm1176")),
            (Some(c"/work/d/prog"), true, Some(5), Some(c"max,sve=off")),
            (Some(longest), true, Some(5), Some(longest_model)),
        ] {
            let kernel_auxv: &[_] = if fd.is_some() { &auxv } else { &with_fd };
            let r = rewritten(
                &kernel_argv,
                &envp,
                kernel_auxv,
                &plan(program, keep, fd, cpu),
            );
            assert_eq!((r.old - r.new) % 2, 0, "stack pointer not 16-byte aligned");
            let p = r.process();
            let path = program.map_or(&b"./prog"[..], CStr::to_bytes);
            let mut want: Vec<&[u8]> = std::vec![b"/interp"];
            if let Some(c) = cpu {
                want.extend([&b"-cpu"[..], c.to_bytes()]);
            }
            want.extend([&b"--"[..], path]);
            if keep {
                want.push(b"./prog");
            }
            want.extend([&b"prog"[..], b"arg"]);
            assert_eq!(strings(&p.argv), want);
            assert_eq!(strings(&p.envp), [&b"PATH=/bin"[..], b"HOME=/"]);
            assert_eq!(
                p.aux,
                Aux {
                    execfd: Some(5),
                    flags: 1,
                    secure: false,
                    phdr: if fd.is_some() { 0x1000 } else { 0 },
                    phnum: 0,
                    pagesz: 4096,
                }
            );
            // One env entry dropped; `--`, argv0, AT_EXECFD and `-cpu
            // MODEL` inserted.
            let new_words = r.words - 1
                + 1
                + usize::from(keep)
                + 2 * usize::from(fd.is_some())
                + 2 * usize::from(cpu.is_some());
            assert_eq!(p.stack.as_ref().unwrap().words, new_words);
            let argv = |i| p.argv.get(i).unwrap();
            let c = 2 * usize::from(cpu.is_some());
            for i in 1..=1 + c {
                assert!(r.in_block(argv(i), new_words), "argv[{i}]");
            }
            assert_eq!(program.is_some(), r.in_block(argv(2 + c), new_words));
            assert_eq!(argv(0).as_ptr(), kernel_argv[0].as_ptr());
            assert!(r.mem[r.old + r.words..].iter().all(|&w| w == UNTOUCHED));
        }
    }
}
