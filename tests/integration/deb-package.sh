# deb-package.sh: the Debian package's life in a Debian 12 chroot (issue 13),
# run by tests/integration/packaging.rs inside a user namespace with a full
# uid map and a private binfmt_misc instance (already proven private), after
# CAP_SH. $R is a fresh copy of a debootstrap'ed bookworm (minbase) root
# holding in /pkg: qemu-shim.deb (this version), qemu-shim-prev.deb (the
# same build packaged as an older version), qemu-old.deb and qemu-new.deb
# (two qemu-user-static versions), binfmt-support.deb and libpipeline1.deb
# (Debian's update-binfmts), busybox (arm64, static). Each step's output
# goes to $CAPS through `cap`; tests/integration/packaging.rs checks them.
B=/proc/sys/fs/binfmt_misc
F=/var/lib/qemu-shim/qemu-shim-interp
in_root() { chroot "$R" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
# What is ours in the table and on disk, one line each.
left() {
	ls "$B" | grep '^qemu-shim' || true
	for f in /var/lib/qemu-shim /etc/binfmt.d/zz-qemu-shim.conf /usr/bin/qemu-shim; do
		[ ! -e "$R$f" ] || echo "$f"
	done
}
# The table in match order (newest first), for the entries that run
# aarch64 and the markers registered between steps.
order() { ls -U "$B" | grep -E '^(qemu-aarch64|qemu-shim-aarch64|marker[0-9])$' | tr '\n' ' '; }
# The package's files (not directories) still there, and its dpkg info.
files_left() {
	while read -r f; do
		[ -d "$R$f" ] || [ ! -e "$R$f" ] || echo "$f"
	done <"$S/pkg-files"
	ls "$R/var/lib/dpkg/info" | grep '^qemu-shim\.' || true
}
marker() { printf ':marker%s:E::marker%s::/bin/true:' "$1" "$1" >"$B/register"; }

# 1. No /proc in the root: binfmt_misc cannot be mounted there. The
#    package still configures, with a warning that the registration waits.
cap qemu-old in_root dpkg -i /pkg/qemu-old.deb
cap no-proc in_root dpkg -i /pkg/qemu-shim.deb
cap no-proc-status in_root dpkg-query -W -f '${Status}' qemu-shim
cap no-proc-left left

# 2. With /proc (and in it this namespace's private binfmt_misc): purge
#    leaves nothing.
mount --rbind /proc "$R/proc"
mount --rbind /dev "$R/dev"
cap purge-pending in_root dpkg --purge qemu-shim
cap purge-pending-left left

# 3. Debian's own registration, for real: binfmt-support's update-binfmts,
#    then qemu-user-static (re)configured, whose postinst imports its
#    formats (the first install above ran without update-binfmts).
cap binfmt-support in_root dpkg -i /pkg/libpipeline1.deb /pkg/binfmt-support.deb
cap debian-register in_root dpkg -i /pkg/qemu-old.deb
cap debian-left ls "$B"

# 4. The older qemu-shim package, registering on configure: ours newest.
#    Its interpreter is swapped for the unstripped build of the same code
#    (an interpreter that differs between versions, as a real upgrade's).
rm -rf "$S/prev"
dpkg-deb -R "$R/pkg/qemu-shim-prev.deb" "$S/prev"
cp "$INTERP" "$S/prev/usr/libexec/qemu-shim/qemu-shim-interp"
(cd "$S/prev" && find usr -type f | sort | xargs md5sum >DEBIAN/md5sums)
dpkg-deb --root-owner-group -Zgzip -z1 -b "$S/prev" "$R/pkg/qemu-shim-v1.deb" >/dev/null
cap install-v1 in_root dpkg -i /pkg/qemu-shim-v1.deb
cap v1-left left
cap run-v1 in_root /pkg/busybox uname -m
cap status-v1 in_root qemu-shim status --json
cap inode-v1 stat -c %i "$R$F"

# 5. Package upgrade v1 -> v2, in dpkg's two halves: unpacked (old prerm
#    upgrade, new files), entries still registered and running; then
#    configured: the file rewritten for the new interpreter, ours still
#    first. Then v2 again: nothing to rewrite.
cap unpack-v2 in_root dpkg --unpack /pkg/qemu-shim.deb
cap unpacked-entries ls "$B"
cap run-unpacked in_root /pkg/busybox uname -m
cap configure-v2 in_root dpkg --configure qemu-shim
cap v2-version in_root dpkg-query -W -f '${Version}' qemu-shim
cap run-v2 in_root /pkg/busybox uname -m
cap status-v2 in_root qemu-shim status --json
cap inode-v2 stat -c %i "$R$F"
cap reinstall-v2 in_root dpkg -i /pkg/qemu-shim.deb
cap run-v2-again in_root /pkg/busybox uname -m
cap inode-v2-again stat -c %i "$R$F"

# 6. qemu-user-static upgraded: its postinst re-registers Debian's entries
#    (update-binfmts --import: newest, after the marker), then our trigger
#    carries the new emulators and puts ours first again.
marker 1
cap upgrade in_root dpkg -i /pkg/qemu-new.deb
cap order-upgrade order
cap run-new in_root /pkg/busybox uname -m
cap status-new in_root qemu-shim status --json
cap doctor-new in_root qemu-shim doctor
cap inode-new stat -c %i "$R$F"

# 7. The same version again (a reinstall): Debian's entries re-registered
#    once more, the carried copies unchanged, ours first again anyway.
marker 2
cap same-qemu in_root dpkg -i /pkg/qemu-new.deb
cap order-same order
cap status-same in_root qemu-shim status --json
cap inode-same stat -c %i "$R$F"

# 8. Someone else's entry, then qemu-user-static removed (its prerm
#    unimports Debian's entries): the trigger removes our registration (it
#    follows the emulators there are) and never theirs; reinstalled, ours
#    comes back.
printf '%s' ':someone-else:E::someone::/bin/true:' >"$B/register"
cap remove-qemu in_root dpkg -r qemu-user-static
cap removed-left left
cap reinstall-qemu in_root dpkg -i /pkg/qemu-new.deb
cap reinstalled-left left

# 9. Purged (the package upgraded from v1, the emulators upgraded,
#    removed and back): nothing of ours is left — no entry, no
#    /var/lib/qemu-shim, no binfmt.d line, none of the package's files —
#    and the other entries (Debian's, someone else's) stay.
in_root dpkg-query -L qemu-shim >"$S/pkg-files"
cap purge in_root dpkg --purge qemu-shim
cap purged-left left
cap others ls "$B"
cap files-left files_left

# 10. The table reachable but read-only (as /proc/sys is in a docker
#     container): our entries cannot be removed. Neither remove nor purge
#     fails; each dpkg run says so in one line with the command; the file
#     they run stays, the binfmt.d line goes. First remove, then purge,
#     as two runs; then purge alone, one run. The command, run where the
#     table is writable, removes exactly ours.
ro() { mount --bind "$R$B" "$R$B" && mount -o remount,bind,ro "$R$B"; }
cap install-again in_root dpkg -i /pkg/qemu-shim.deb
ro
cap remove-ro in_root dpkg -r qemu-shim
cap remove-ro-left left
cap purge-ro1 in_root dpkg --purge qemu-shim
cap purge-ro1-left left
umount "$R$B"
cap install-again2 in_root dpkg -i /pkg/qemu-shim.deb
ro
cap purge-ro in_root dpkg --purge qemu-shim
cap purge-ro-left left
umount "$R$B"
cmd=$(sed -n 's/.*remove them where the table is writable with: //p' "$CAPS/purge-ro.err" | head -n 1)
cap purge-ro-command in_root sh -c "$cmd"
cap purge-ro-command-left left
cap purge-ro-others ls "$B"
rm -r "$R/var/lib/qemu-shim"

# 11. In a container (docker's marker file): registration is skipped, but
#     what this system registers by hand from the package's file (as the
#     warning says) is removed on purge; an entry of another install (the
#     host's, made here with the release CLI) stays. Entries on the
#     package's path where this system has no such file are the host's:
#     they stay too.
"$CLI" install s390x --emulator-dir "$EMUS" --install-dir "$S/host-inst" >/dev/null
touch "$R/.dockerenv"
cap container-install in_root dpkg -i /pkg/qemu-shim.deb
cap container-register in_root qemu-shim install aarch64 --persist --quiet
cap container-registered left
cap container-purge in_root dpkg --purge qemu-shim
cap container-left left
cap container-install2 in_root dpkg -i /pkg/qemu-shim.deb
in_root qemu-shim install aarch64 --quiet
rm -r "$R/var/lib/qemu-shim"
cap container-purge2 in_root dpkg --purge qemu-shim
cap container-left2 left
