//! The dispatch table reader (crates/registry/core's `dispatch`), which the
//! interpreter runs on its own file at every exec. Any bytes: never a
//! panic; a table it accepts is written back by `encode` to a table that
//! reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qemu_shim_registry::dispatch::{self, Entry, Table};

fuzz_target!(|data: &[u8]| {
    let Ok(t) = Table::parse(data) else {
        return;
    };
    let entries: Vec<Entry<'_>> = t.iter().collect();
    assert_eq!(entries.len(), t.len());
    for e in &entries {
        assert!(t.find(e.arch).is_some());
        if let dispatch::Convention::Carried(c) = e.convention {
            let _ = c.segments();
            let _ = c.fixes();
        }
    }
    let mut out = vec![0u8; dispatch::REGION_SIZE.max(data.len())];
    let used = dispatch::encode(&entries, t.flags(), &mut out).expect("re-encode a parsed table");
    let back = Table::parse(&out[..used.max(16)]).expect("parse a re-encoded table");
    assert_eq!(back.flags(), t.flags());
    assert!(back.iter().eq(entries.iter().copied()));
});
