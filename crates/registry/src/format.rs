//! The kernel's binfmt_misc text formats as types: the register line, the entry file, binfmt.d lines.
