//! Raw syscalls.
#![allow(unsafe_code)]

/// Ends the process.
pub fn exit(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe {
            core::arch::asm!("syscall", in("rax") 231, in("rdi") code, options(noreturn));
        }
    }
}

#[cfg(all(feature = "rt", not(test)))]
mod rt {
    core::arch::global_asm!(
        ".globl _start",
        "_start:",
        "xor ebp, ebp",
        "mov rdi, 0",
        "mov eax, 231",
        "syscall",
    );
    #[no_mangle]
    extern "C" fn rust_eh_personality() {}
}
