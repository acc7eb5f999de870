# private-binfmt.sh: the first lines of every test script that writes a
# binfmt_misc table. Sourced (`. FILE`) or prepended to the script, in a
# POSIX shell running inside a new user and mount namespace; included as
# text by src/lib.rs, crates/cli/src/plain_tests.rs and
# crates/registry/src/test_support.rs, sourced by scripts/aarch64-host/run.
#
# It mounts a new binfmt_misc instance on /proc/sys/fs/binfmt_misc and
# proves it private before anything writes there, or exits 90 saying why.
# A user and mount namespace alone proves nothing: it inherits the host's
# mounts, so where the host has binfmt_misc mounted the path already shows
# the host's instance, which root mapped to root may write. Instances are
# keyed by user namespace, so the proof is:
#   - this user namespace is not the initial one (not PID 1's, and not the
#     inode the kernel gives the initial one, PROC_USER_INIT_INO), and not
#     the one of the process that started us: it is new, and a new user
#     namespace has no instance until something mounts one in it;
#   - the mount below succeeded (it is the one now on the path), and the
#     instance shows only `register` and `status`: empty.
# A uid map is no proof (any namespace may map 0 0 4294967295), and a
# "mount unless mounted" step would take the inherited instance for ours.
#
# The caller reads the namespaces before it unshares, as DEV:INODE of
# /proc/PID/ns/user (`stat -Lc %d:%i`): from inside, PID 1's cannot be
# read. Input:  QEMU_SHIM_OUTER_USERNS  the caller's user namespace
#               QEMU_SHIM_INIT_USERNS   PID 1's, or empty where even root
#                                       may not read it (some VMs' PID 1)
# Output: QEMU_SHIM_PRIVATE_BINFMT, exported: this user namespace, the one
# whose instance was proven (Rust tests check it against their own).
private_binfmt_fail() {
	echo "private-binfmt: $*: refusing to write a binfmt_misc table" >&2
	exit 90
}
case ${QEMU_SHIM_OUTER_USERNS:-}/${QEMU_SHIM_INIT_USERNS:-} in
[0-9]*:[0-9]*/ | [0-9]*:[0-9]*/[0-9]*:[0-9]*) ;;
*) private_binfmt_fail "QEMU_SHIM_OUTER_USERNS (and QEMU_SHIM_INIT_USERNS, if set) must be DEV:INODE of the caller's (and PID 1's) user namespace" ;;
esac
private_binfmt_ns=$(stat -Lc %d:%i /proc/self/ns/user) ||
	private_binfmt_fail "cannot read /proc/self/ns/user"
# 0xEFFFFFFD: PROC_USER_INIT_INO, fixed by the kernel (include/linux/proc_ns.h).
[ "${private_binfmt_ns#*:}" != 4026531837 ] ||
	private_binfmt_fail "this is the initial user namespace"
[ "$private_binfmt_ns" != "${QEMU_SHIM_INIT_USERNS:-}" ] ||
	private_binfmt_fail "this is PID 1's user namespace"
[ "$private_binfmt_ns" != "$QEMU_SHIM_OUTER_USERNS" ] ||
	private_binfmt_fail "this is the caller's user namespace, not a new one"
mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
	private_binfmt_fail "cannot mount a new binfmt_misc instance (Linux >= 6.7 needed)"
private_binfmt_ls=$(ls -A /proc/sys/fs/binfmt_misc | tr '\n' ' ')
[ "$private_binfmt_ls" = "register status " ] ||
	private_binfmt_fail "the instance just mounted is not empty ($private_binfmt_ls)"
QEMU_SHIM_PRIVATE_BINFMT=$private_binfmt_ns
export QEMU_SHIM_PRIVATE_BINFMT
unset private_binfmt_ns private_binfmt_ls
