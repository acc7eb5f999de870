//! The binary's runtime: the entry point `_start`, the program's own
//! relocation, and the memory functions a libc-free Rust program must
//! provide. The binary's only `unsafe` outside the library's `sys` module;
//! it lives here, not in the library, so that programs linking the library
//! with std (the benchmarks) never see a second `_start` or `memcpy`.
#![allow(unsafe_code)]

use qemu_shim_interp::sys;

/// Applies the program's own relative relocations. A static PIE has no
/// dynamic loader to do it, and tables of pointers (string tables, for one)
/// hold link-time addresses until this has run. Must run before any code
/// that reads such data; it reads only `_DYNAMIC` and the relocation table.
///
/// # Safety
/// Must be called once, first thing, in a static PIE loaded by the kernel.
unsafe fn relocate_self() {
    let (base, dynamic) = (sys::load_base(), sys::dynamic_section());
    const DT_NULL: usize = 0;
    const DT_RELA: usize = 7;
    const DT_RELASZ: usize = 8;
    const DT_RELAENT: usize = 9;
    #[cfg(target_arch = "x86_64")]
    const R_RELATIVE: usize = 8;
    #[cfg(target_arch = "aarch64")]
    const R_RELATIVE: usize = 1027;
    // SAFETY: the linker defines both symbols for a static PIE, whose
    // addresses `sys` takes PC-relatively. The dynamic section is a DT_NULL-terminated array of
    // (tag, value) words; RELA entries are (offset, info, addend) words and
    // each RELATIVE one names a word inside our own writable image.
    unsafe {
        let mut dynamic = dynamic as *const usize;
        let (mut rela, mut relasz, mut relaent) = (0usize, 0usize, 24usize);
        loop {
            let tag = *dynamic;
            let val = *dynamic.add(1);
            match tag {
                DT_NULL => break,
                DT_RELA => rela = val,
                DT_RELASZ => relasz = val,
                DT_RELAENT => relaent = val,
                _ => {}
            }
            dynamic = dynamic.add(2);
        }
        if rela == 0 || relaent == 0 {
            return;
        }
        let mut at = base + rela;
        let end = at + relasz;
        while at < end {
            let r = at as *const usize;
            if *r.add(1) & 0xffff_ffff == R_RELATIVE {
                let place = (base + *r) as *mut usize;
                place.write_volatile(base.wrapping_add(*r.add(2)));
            }
            at += relaent;
        }
    }
}

/// The Rust side of `_start`.
///
/// # Safety
/// Called only by `_start` with the kernel's initial stack pointer.
unsafe extern "C" fn start_rust(sp: *const usize) -> ! {
    // SAFETY: we are the first code to run in a kernel-loaded static PIE,
    // with the kernel's stack pointer (see `_start`).
    let process = unsafe {
        relocate_self();
        sys::process_from_stack(sp)
    };
    let failure = qemu_shim_interp::run(&process);
    // Nothing useful can be done if stderr is gone; the exit code still tells.
    let _ = sys::write_all(2, failure.render().as_bytes());
    sys::exit(failure.code())
}

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".globl _start",
    ".type _start,@function",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "sub rsp, {gap}",
    "and rsp, -16",
    "call {start}",
    "ud2",
    start = sym start_rust,
    gap = const sys::GAP,
);

#[cfg(target_arch = "aarch64")]
core::arch::global_asm!(
    ".globl _start",
    ".type _start,%function",
    "_start:",
    "mov x29, #0",
    "mov x30, #0",
    "mov x0, sp",
    // GAP (4,144) is no add/sub immediate: through a register.
    "mov x9, #{gap}",
    "sub sp, sp, x9",
    "bl {start}",
    "brk #1",
    start = sym start_rust,
    gap = const sys::GAP,
);

/// The memory functions the compiler may call. String instructions on
/// x86_64; elsewhere byte loops through volatile accesses, which the
/// compiler cannot turn back into calls to these very functions.
mod mem {
    /// # Safety
    /// As C's memcpy: `n` bytes readable at `src`, writable at `dst`, no overlap.
    #[no_mangle]
    unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the caller guarantees both ranges are valid for `n` bytes.
        unsafe { copy_forward(dst, src, n) };
        dst
    }

    /// # Safety
    /// As C's memmove: `n` bytes readable at `src`, writable at `dst`.
    #[no_mangle]
    unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
        // SAFETY: the caller guarantees both ranges are valid for `n` bytes;
        // copying backwards when `dst` is above `src` handles overlap.
        unsafe {
            if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
                copy_forward(dst, src, n);
            } else {
                for i in (0..n).rev() {
                    dst.add(i).write_volatile(src.add(i).read_volatile());
                }
            }
        }
        dst
    }

    /// Copies `n` bytes upwards (`rep movsb`, fast on every x86_64 since
    /// Ivy Bridge; a byte loop elsewhere).
    ///
    /// # Safety
    /// `n` bytes readable at `src` and writable at `dst`; `dst <= src` or
    /// no overlap.
    #[inline(always)]
    unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees both ranges; the direction flag is
        // clear per the ABI, so the copy goes upwards.
        unsafe {
            core::arch::asm!(
                "rep movsb",
                inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
                options(nostack, preserves_flags),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: the caller guarantees both ranges.
        unsafe {
            for i in 0..n {
                dst.add(i).write_volatile(src.add(i).read_volatile());
            }
        }
    }

    /// # Safety
    /// As C's memset: `n` bytes writable at `dst`.
    #[no_mangle]
    unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller guarantees `n` writable bytes at `dst`.
        unsafe {
            core::arch::asm!(
                "rep stosb",
                inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
                options(nostack, preserves_flags),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        // SAFETY: the caller guarantees `n` writable bytes at `dst`.
        unsafe {
            for i in 0..n {
                dst.add(i).write_volatile(c as u8);
            }
        }
        dst
    }

    /// # Safety
    /// As C's memcmp: `n` bytes readable at both.
    #[no_mangle]
    unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: the caller guarantees `n` readable bytes at both.
        unsafe {
            for i in 0..n {
                let (x, y) = (a.add(i).read_volatile(), b.add(i).read_volatile());
                if x != y {
                    return i32::from(x) - i32::from(y);
                }
            }
        }
        0
    }

    /// # Safety
    /// As C's bcmp: `n` bytes readable at both.
    #[no_mangle]
    unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
        // SAFETY: same contract as memcmp.
        unsafe { memcmp(a, b, n) }
    }

    /// # Safety
    /// As C's strlen: `s` points to a NUL-terminated string.
    #[no_mangle]
    unsafe extern "C" fn strlen(s: *const u8) -> usize {
        let mut n = 0;
        // SAFETY: the caller guarantees a NUL within the string's memory.
        unsafe {
            while s.add(n).read_volatile() != 0 {
                n += 1;
            }
        }
        n
    }

    /// Referenced by core even with panic = "abort"; never called, since
    /// nothing unwinds.
    #[no_mangle]
    extern "C" fn rust_eh_personality() {}
}
