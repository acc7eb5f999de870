//! The reader of binfmt_misc entry files (/proc/sys/fs/binfmt_misc/NAME,
//! crates/registry's `format::EntryFile`): never a panic; a parsed entry
//! answers `matches` for any header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_shim_registry::format::EntryFile;

fuzz_target!(|data: &[u8]| {
    let (header, text) = data.split_at(data.len().min(128));
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(e) = EntryFile::parse(text) {
        let _ = e.matches(header);
        let _ = e.register_line("fuzz");
    }
});
