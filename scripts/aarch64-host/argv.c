/* A static x86_64 test program for scripts/aarch64-host/run: prints its
 * argv one per line, then, if its last argument is "exit=N", exits with
 * status N, or if it is "signal=N", kills itself with signal N (0
 * otherwise), so argv, exit status and death by a signal passed through
 * the aarch64 interpreter can be checked exactly. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	const char *last = argc > 1 ? argv[argc - 1] : "";

	for (int i = 0; i < argc; i++)
		printf("argv[%d]=%s\n", i, argv[i]);
	fflush(stdout);
	if (strncmp(last, "exit=", 5) == 0)
		return atoi(last + 5);
	if (strncmp(last, "signal=", 7) == 0) {
		signal(atoi(last + 7), SIG_DFL);
		raise(atoi(last + 7));
	}
	return 0;
}
