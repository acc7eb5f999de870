//! binfmt_misc registry I/O against a root directory (default /proc/sys/fs/binfmt_misc).
