//! The binfmt_misc register-line parser (crates/registry's `format`), run
//! on lines from binfmt.d files and the command line: never a panic, and a
//! line it accepts prints (`Display`) as a line that parses to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_shim_registry::format::{parse_binfmt_d, RegisterLine};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(line) = text.parse::<RegisterLine>() {
        let printed = line.to_string();
        let back: RegisterLine = printed
            .parse()
            .unwrap_or_else(|e| panic!("{printed:?} does not parse back: {e}"));
        assert_eq!(back, line);
        let _ = line.validate();
        let _ = line.expected_entry();
    }
    for l in parse_binfmt_d(text).into_iter().flatten() {
        let _ = l.validate();
    }
});
