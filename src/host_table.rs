//! The host's binfmt_misc table, for the few tests that must use it: a
//! rootful container engine cannot run inside a private binfmt_misc instance
//! here (cgroup v1 `devices.deny` fails with EPERM in a user namespace), so
//! the container tests register in the host's table. Their names start with
//! `host_table_`; they take [`HostTable`], which serialises them (a lock
//! file) and puts the table back as it was when dropped, even when the test
//! panics: every entry's name and contents, and the table's on/off switch.
//!
//! The table is read and written through a mount of binfmt_misc in a mount
//! namespace of its own (`unshare --mount`, a helper process: the test
//! harness is multithreaded), so the host's mounts are never changed: these
//! machines boot with it unmounted, systemd machines mount it, and both stay
//! as they are.
//!
//! On Linux >= 6.7 the host's entries live only as long as some mount of
//! binfmt_misc does: when the last one goes, the kernel drops them (checked
//! on 6.18: an entry registered through a mount in a throwaway mount
//! namespace is gone once that namespace is). A systemd host keeps its boot
//! mount; these VMs have none. So while held, [`HostTable`] keeps a mount
//! alive in a process of its own — the host as systemd leaves it — or what
//! a container registers would vanish when the container exits.

use std::fs::{File, OpenOptions};
use std::process::{Command, Stdio};

use nix::fcntl::{Flock, FlockArg};

use qemu_shim_registry::format::EntryFile;

/// Where the lock lives: one per machine, whichever checkout runs.
const LOCK: &str = "/run/lock/qemu-shim-host-table.lock";

/// A shell prologue that makes /proc/sys/fs/binfmt_misc the host's table
/// in a private mount namespace of the host's user namespace: the mount
/// inherited from the host if it has one (the kernel refuses, EBUSY, to
/// mount the instance again on top of itself), else a new mount of it.
const MOUNT: &str = "cd /proc/sys/fs/binfmt_misc\n\
    [ -e register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc\n\
    cd /proc/sys/fs/binfmt_misc\n";

/// The table's state: its switch, and each entry's name and contents in the
/// order the kernel lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableState {
    pub enabled: String,
    pub entries: Vec<(String, String)>,
}

impl TableState {
    /// Reads the host's table.
    pub fn read() -> TableState {
        // ls -U: the kernel's order, the order entries are tried in.
        let script = format!(
            "{MOUNT}cat status\nls -U | while IFS= read -r e; do\n\
             \tcase $e in register|status) continue ;; esac\n\
             \tprintf '\\036%s\\037' \"$e\"\n\tcat \"$e\"\ndone\n"
        );
        let out = host_sh(&script);
        let mut parts = out.split('\u{1e}');
        let enabled = parts.next().unwrap_or_default().trim().to_owned();
        let entries = parts
            .filter_map(|p| p.split_once('\u{1f}'))
            .map(|(n, c)| (n.to_owned(), c.to_owned()))
            .collect();
        TableState { enabled, entries }
    }

    /// Names of the entries qemu-shim owns.
    pub fn owned(&self) -> Vec<&str> {
        self.entries
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.starts_with("qemu-shim-"))
            .collect()
    }
}

/// Runs `script` with `sh -euc` as root in a new mount namespace of the
/// host's user namespace; returns its stdout. Panics with its stderr if it
/// fails.
fn host_sh(script: &str) -> String {
    let o = Command::new("unshare")
        .args(["--mount", "--", "sh", "-euc", script])
        .stdin(Stdio::null())
        .output()
        .expect("spawn unshare");
    assert!(
        o.status.success(),
        "the host-table helper failed (the host_table_ tests need root in the host's user \
         namespace): {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Single quotes for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The host's table held by one test: locked against the other
/// `host_table_` tests, and put back as it was on drop.
pub struct HostTable {
    _lock: Flock<File>,
    before: TableState,
    /// Holds a binfmt_misc mount (in a mount namespace of its own) while
    /// the table is held.
    holder: std::process::Child,
}

impl HostTable {
    /// Waits for the lock, then records the table.
    pub fn take() -> HostTable {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK)
            .unwrap_or_else(|e| {
                panic!("cannot open {LOCK}: {e} (the host_table_ tests run as root)")
            });
        let lock = Flock::lock(lock, FlockArg::LockExclusive)
            .unwrap_or_else(|(_, e)| panic!("cannot lock {LOCK}: {e}"));
        let before = TableState::read();
        let mut holder = Command::new("unshare")
            .args(["--mount", "--", "sh", "-euc"])
            .arg(format!("{MOUNT}echo ready\nexec sleep 86400"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn unshare");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.stdout.as_mut().expect("piped")),
            &mut line,
        )
        .expect("read from the mount holder");
        assert_eq!(line, "ready\n", "cannot hold a binfmt_misc mount");
        HostTable {
            _lock: lock,
            before,
            holder,
        }
    }

    /// The table as it was when taken.
    pub fn before(&self) -> &TableState {
        &self.before
    }

    /// Puts the table back: entries that are new or changed are removed,
    /// entries that are gone are registered again from what they were (in
    /// the order listed, disabled again where they were), and the switch is
    /// set as it was. Returns what it could not restore.
    pub fn restore(&self) -> Result<(), String> {
        let now = TableState::read();
        let mut script = String::from(MOUNT);
        for (name, contents) in &now.entries {
            if !self
                .before
                .entries
                .contains(&(name.clone(), contents.clone()))
            {
                script.push_str(&format!("echo -1 > {}\n", quote(name)));
            }
        }
        // Oldest first: the kernel lists (and tries) the newest first, so
        // registering in reverse keeps the order among those restored.
        for (name, contents) in self.before.entries.iter().rev() {
            if now.entries.contains(&(name.clone(), contents.clone())) {
                continue;
            }
            let entry =
                EntryFile::parse(contents).map_err(|e| format!("cannot restore {name}: {e}"))?;
            let line = entry
                .register_line(name)
                .ok_or_else(|| format!("cannot restore {name}: no register line for it"))?;
            script.push_str(&format!(
                "printf '%s' {} > register\n",
                quote(&line.to_string())
            ));
            if !entry.enabled {
                script.push_str(&format!("echo 0 > {}\n", quote(name)));
            }
        }
        let switch = if self.before.enabled == "enabled" {
            1
        } else {
            0
        };
        script.push_str(&format!("echo {switch} > status\n"));
        host_sh(&script);
        let after = TableState::read();
        let mut want = self.before.entries.clone();
        let mut got = after.entries.clone();
        want.sort();
        got.sort();
        if want != got || after.enabled != self.before.enabled {
            return Err(format!(
                "the host's binfmt_misc table could not be restored:\nbefore: {:#?}\nafter: {:#?}",
                self.before, after
            ));
        }
        Ok(())
    }
}

impl Drop for HostTable {
    fn drop(&mut self) {
        let restored = self.restore();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        if let Err(e) = restored {
            // A panic while unwinding would abort: say it loudly instead;
            // scripts/test compares the table before and after too.
            eprintln!("HOST TABLE NOT RESTORED: {e}");
            if !std::thread::panicking() {
                panic!("{e}");
            }
        }
    }
}
