//! Helpers shared by the unit tests.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A fresh directory under the system temp dir (`qemu-shim-cli-test-…`,
/// mode 0755 as a plain `mkdir` makes it), removed on drop: a
/// [`tempfile::TempDir`] that panics instead of returning an error.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = tempfile::Builder::new()
            .prefix("qemu-shim-cli-test-")
            .permissions(std::fs::Permissions::from_mode(0o755))
            .tempdir()
            .expect("create a temporary directory");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}
