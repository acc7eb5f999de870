/* procexe: a test program for what an emulated program sees of its own
 * path (issue 15). Built static for a foreign arch by tests/kernel_exec.rs
 * (aarch64) and scripts/aarch64-host/run (x86_64).
 *
 *   procexe [DIR]
 *
 * changes to DIR if given, then prints four lines:
 *   argv0=ARGV[0]
 *   execfn=AT_EXECFN          (the path the program was started by)
 *   exe=READLINK              readlink("/proc/self/exe"), or exe!ERRNO
 *   open=same                 open("/proc/self/exe") gives this very
 *                             file (device and inode of AT_EXECFN, read
 *                             before the chdir), or open=other, or
 *                             open=unknown (AT_EXECFN or the descriptor
 *                             could not be stat'ed), or open!ERRNO
 * and exits 0 (2 on bad usage). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char exe[PATH_MAX + 1];
	const char *execfn = (const char *)getauxval(AT_EXECFN);
	struct stat self, st;
	int have_self, fd;
	ssize_t n;

	if (argc > 2 || !execfn)
		return 2;
	have_self = stat(execfn, &self) == 0;
	if (argc == 2 && chdir(argv[1]) != 0) {
		printf("chdir!%d\n", errno);
		return 2;
	}
	printf("argv0=%s\n", argc > 0 ? argv[0] : "(none)");
	printf("execfn=%s\n", execfn);
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n < 0) {
		printf("exe!%d\n", errno);
	} else {
		exe[n] = 0;
		printf("exe=%s\n", exe);
	}
	fd = open("/proc/self/exe", O_RDONLY);
	if (fd < 0)
		printf("open!%d\n", errno);
	else if (!have_self || fstat(fd, &st) != 0)
		printf("open=unknown\n");
	else if (st.st_dev == self.st_dev && st.st_ino == self.st_ino)
		printf("open=same\n");
	else
		printf("open=other\n");
	return 0;
}
