//! What the crate's unit tests share: the third-party fixtures.

use std::path::{Path, PathBuf};

/// Debian's `qemu-<emulator>-static` (e.g. `qemu("qemu-aarch64")`), where
/// `scripts/fetch-fixtures` puts it; a missing one fails the test.
pub fn qemu(emulator: &str) -> PathBuf {
    let fixtures = std::env::var_os("QEMU_SHIM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fixtures"));
    let path = fixtures.join("qemu").join(format!("{emulator}-static"));
    assert!(
        path.is_file(),
        "missing fixture {}: run scripts/fetch-fixtures",
        path.display()
    );
    path
}
