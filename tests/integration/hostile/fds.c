/* fds: writes to the file named by argv[1] what its descriptors 0, 1 and 2
 * are -- `-` closed, `p` the program's own file, `n` /dev/null, `f`
 * /dev/full, `o` anything else -- then its euid: "-oo euid=0". Built for
 * aarch64, statically, by tests/integration/hostile/descriptors.rs. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
int main(int argc, char **argv) {
	char line[64];
	int n = 0;
	struct stat self, st;
	if (argc < 2 || stat(argv[0], &self) != 0)
		return 2;
	for (int fd = 0; fd < 3; fd++) {
		if (fstat(fd, &st) != 0)
			line[n++] = '-';
		else if (st.st_dev == self.st_dev && st.st_ino == self.st_ino)
			line[n++] = 'p';
		else if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3))
			line[n++] = 'n';
		else if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 7))
			line[n++] = 'f';
		else
			line[n++] = 'o';
	}
	n += snprintf(line + n, sizeof line - n, " euid=%d\n", (int)geteuid());
	int out = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0666);
	if (out < 0 || write(out, line, n) != n)
		return 3;
	return 0;
}
