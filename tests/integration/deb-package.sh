# deb-package.sh: the Debian package's life in a Debian 12 chroot (issue 13),
# run by tests/integration/packaging.rs inside a user namespace with a full
# uid map and a private binfmt_misc instance (already proven private), after CAP_SH.
# $R is a fresh copy of a debootstrap'ed bookworm (minbase) root holding
# /pkg/qemu-shim.deb, /pkg/qemu-old.deb and /pkg/qemu-new.deb (two
# qemu-user-static versions) and /pkg/busybox (arm64, static). Each step's
# output goes to $CAPS through `cap`; tests/integration/packaging.rs checks
# them.
B=/proc/sys/fs/binfmt_misc
in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# What is ours in the table and on disk, one line each.
left() {
	ls "$B" | grep '^qemu-shim' || true
	for f in /var/lib/qemu-shim /etc/binfmt.d/zz-qemu-shim.conf /usr/bin/qemu-shim; do
		[ ! -e "$R$f" ] || echo "$f"
	done
}

# 1. No /proc in the root: binfmt_misc cannot be mounted there. The
#    package still configures, with a warning that the registration waits.
cap qemu-old in_root dpkg -i /pkg/qemu-old.deb
cap no-proc in_root dpkg -i /pkg/qemu-shim.deb
cap no-proc-status in_root dpkg-query -W -f '${Status}' qemu-shim
cap no-proc-left left

# 2. With /proc (and in it this namespace's private binfmt_misc): purge
#    leaves nothing, then a fresh install registers on configure.
mount --rbind /proc "$R/proc"
mount --rbind /dev "$R/dev"
cap purge-pending in_root dpkg --purge qemu-shim
cap purge-pending-left left
cap install in_root dpkg -i /pkg/qemu-shim.deb
cap installed-left left
cap run-old in_root /pkg/busybox uname -m
cap status-old in_root qemu-shim status --json
cap inode-old stat -c %i "$R/var/lib/qemu-shim/qemu-shim-interp"

# 3. Debian's own registration of the same arch, newest so it wins (as
#    qemu's postinst does through binfmt-support), then an upgrade of
#    qemu-user-static: the trigger refreshes the carried copies and puts
#    ours first again.
line=$(grep -v '^#' "$R/usr/lib/binfmt.d/qemu-aarch64.conf" | sed 's|:/usr/libexec/qemu-binfmt/aarch64-binfmt-P:|:/usr/bin/qemu-aarch64-static:|')
# Written from inside the root: the kernel opens the interpreter (F) there.
in_root sh -c 'printf "%s" "$1" >/proc/sys/fs/binfmt_misc/register' sh "$line"
cap distro-status in_root qemu-shim status --json
cap upgrade in_root dpkg -i /pkg/qemu-new.deb
cap run-new in_root /pkg/busybox uname -m
cap status-new in_root qemu-shim status --json
cap doctor-new in_root qemu-shim doctor
cap inode-new stat -c %i "$R/var/lib/qemu-shim/qemu-shim-interp"

# 4. Someone else's entry, then qemu-user-static removed: the trigger
#    removes our registration (it follows the emulators there are) and
#    never theirs; reinstalled, ours comes back.
printf '%s' ':someone-else:E::someone::/bin/true:' >"$B/register"
echo -1 >"$B/qemu-aarch64"
cap remove-qemu in_root dpkg -r qemu-user-static
cap removed-left left
cap reinstall-qemu in_root dpkg -i /pkg/qemu-new.deb
cap reinstalled-left left

# 5. Purge: nothing of ours is left; the other entry stays.
cap purge in_root dpkg --purge qemu-shim
cap purged-left left
cap others ls "$B"

# 6. In a container (docker's marker file): the table is the host's. The
#    package neither registers nor, purged, removes the host's qemu-shim
#    entries (one made here with the release CLI, as a host install would).
"$CLI" install aarch64 --emulator-dir "$EMUS" --install-dir "$S/host-inst" >/dev/null
touch "$R/.dockerenv"
cap container-install in_root dpkg -i /pkg/qemu-shim.deb
cap container-purge in_root dpkg --purge qemu-shim
cap container-left left
