/* hostile-helper: what the hostile-input tests need and a shell cannot do.
 * Compiled with cc by each test that uses it (tests/integration/hostile.rs).
 *
 *   argc0 PROG             execve(PROG) with an empty argv (argc == 0)
 *   run OUT PROG [ARGS]    run PROG with stdout and stderr in OUT.out and
 *                          OUT.err; print "exit N" or "signal N"
 *   many N OUT PROG [ARGS] start N copies of PROG at once (with arguments,
 *                          the last one gets the copy's number appended),
 *                          then wait for all; copy i writes OUT.i.out and
 *                          OUT.i.err; print "i exit N" or "i signal N"
 *   fexec PROG [ARGS]      open PROG, delete it, then exec it through
 *                          the descriptor (fexecve; not close-on-exec, or
 *                          the kernel refuses binfmt_misc programs with
 *                          ENOENT): a program deleted before the exec
 *   argmax OUT PROG KIND   exec PROG with arguments (KIND "args") or
 *                          environment (KIND "env") of total sizes around
 *                          the kernel's limit (a quarter of the stack
 *                          limit, at most 6 MiB), finely where it lies;
 *                          each run's streams in OUT.SIZE.{out,err};
 *                          print "SIZE exit N" or "SIZE signal N"
 *   corpus LIST [EMU]      run each file named in LIST (one path a line),
 *                          directly or as "EMU FILE"; print "exit N",
 *                          "signal N", or "timeout" (killed after 2 s) per
 *                          file, its stdout and stderr in FILE.out and
 *                          FILE.err
 *   noexecpage PROG [ARGS] exec PROG under a seccomp filter that refuses
 *                          (EACCES) mprotect of one 4 KiB page to
 *                          PROT_EXEC, as SELinux's execmem refuses an
 *                          executable anonymous page; inherited by
 *                          everything PROG execs. Without no_new_privs
 *                          (needs CAP_SYS_ADMIN in its user namespace), so
 *                          setuid programs started under it keep their
 *                          credentials. x86_64 numbering.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void die(const char *what) {
	perror(what);
	exit(99);
}

static void redirect(const char *out, const char *ext, int fd) {
	char path[4096];
	snprintf(path, sizeof path, "%s.%s", out, ext);
	int f = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (f < 0 || dup2(f, fd) < 0)
		die(path);
}

/* Forks a child running argv with its streams in OUT.{out,err}. */
static pid_t start(const char *out, char **argv) {
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		redirect(out, "out", 1);
		redirect(out, "err", 2);
		execve(argv[0], argv, environ);
		fprintf(stderr, "hostile-helper: execve %s: %s\n", argv[0], strerror(errno));
		_exit(98);
	}
	return pid;
}

static void report(const char *tag, int status) {
	const char *sep = *tag ? " " : "";
	if (WIFSIGNALED(status))
		printf("%s%ssignal %d\n", tag, sep, WTERMSIG(status));
	else
		printf("%s%sexit %d\n", tag, sep, WEXITSTATUS(status));
	fflush(stdout);
}

static int wait_for(pid_t pid) {
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			die("waitpid");
	return status;
}

/* Waits at most 2 s for pid; kills it after that. Returns whether it ended
 * on its own, its status in *status. */
static int wait_bounded(pid_t pid, int *status) {
	struct timespec tick = {0, 1000000};
	for (int ms = 0; ms < 2000; ms++) {
		pid_t r = waitpid(pid, status, WNOHANG);
		if (r == pid)
			return 1;
		if (r < 0 && errno != EINTR)
			die("waitpid");
		nanosleep(&tick, NULL);
	}
	kill(pid, SIGKILL);
	wait_for(pid);
	return 0;
}

/* Fills strs[0..] with filler strings of `total` bytes (NULs counted),
 * each at most 128 KiB (the kernel's MAX_ARG_STRLEN); environment entries
 * are named F00=, F01=, ... */
static void filler(char **strs, int max, long total, int env) {
	for (int n = 0; total > 4 && n < max; n++) {
		long len = total > 131072 ? 131072 : total;
		char *s = malloc(len);
		if (!s)
			die("malloc");
		memset(s, 'a', len - 1);
		s[len - 1] = 0;
		if (env)
			snprintf(s, 5, "F%02d", n), s[3] = '=';
		strs[n] = s;
		total -= len;
	}
}

/* Runs prog with filler of `size` bytes; reports "SIZE exit N". Returns
 * the wait status. */
static int run_sized(const char *out, char *prog, int env, long size) {
	char *args[66] = {prog}, *vars[65] = {NULL};
	char tag[4096], line[64];
	filler(env ? vars : args + 1, 64, size, env);
	snprintf(tag, sizeof tag, "%s.%ld", out, size);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		redirect(tag, "out", 1);
		redirect(tag, "err", 2);
		execve(prog, args, vars);
		fprintf(stderr, "hostile-helper: execve %s: %s\n", prog, strerror(errno));
		_exit(98);
	}
	int status = wait_for(pid);
	snprintf(line, sizeof line, "%ld", size);
	report(line, status);
	for (int i = 0; i < 64; i++)
		free(env ? vars[i] : args[i + 1]);
	return status;
}

/* Sweeps sizes around the limit in 512-byte steps, then in 8-byte steps
 * between the last size that ran and the first the kernel refused. */
static void argmax(const char *out, char *prog, int env) {
	struct rlimit rl;
	long limit = 6L << 20, ok = -1, refused = -1;
	if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (long)(rl.rlim_cur / 4) < limit)
		limit = rl.rlim_cur / 4;
	for (long size = limit - 16384; size <= limit + 4096; size += 512) {
		int status = run_sized(out, prog, env, size);
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
			ok = size;
		else if (WIFEXITED(status) && WEXITSTATUS(status) == 98 && refused < 0)
			refused = size;
	}
	if (ok >= 0 && refused > ok)
		for (long size = ok + 8; size < refused; size += 8)
			run_sized(out, prog, env, size);
}

int main(int argc, char **argv) {
	if (argc >= 3 && !strcmp(argv[1], "fexec")) {
		int fd = open(argv[2], O_RDONLY);
		if (fd < 0 || unlink(argv[2]) < 0)
			die(argv[2]);
		fexecve(fd, argv + 2, environ);
		die("fexecve");
	}
	if (argc >= 3 && !strcmp(argv[1], "noexecpage")) {
		struct sock_filter f[] = {
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mprotect, 0, 5),
			/* The length's low word (little-endian), then the protection. */
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 4096, 0, 3),
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
			BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
		if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
			die("seccomp");
		execvp(argv[2], argv + 2);
		die(argv[2]);
	}
	if (argc >= 5 && !strcmp(argv[1], "argmax")) {
		argmax(argv[2], argv[3], !strcmp(argv[4], "env"));
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "argc0")) {
		char *none[] = {NULL};
		execve(argv[2], none, environ);
		die(argv[2]);
	}
	if (argc >= 4 && !strcmp(argv[1], "run")) {
		report("", wait_for(start(argv[2], argv + 3)));
		return 0;
	}
	if (argc >= 5 && !strcmp(argv[1], "many")) {
		int n = atoi(argv[2]);
		int nargs = argc - 4;
		pid_t *pids = calloc(n, sizeof *pids);
		char **args = calloc(nargs + 1, sizeof *args);
		if (!pids || !args)
			die("calloc");
		memcpy(args, argv + 4, nargs * sizeof *args);
		for (int i = 0; i < n; i++) {
			char out[4096], last[4096];
			if (nargs > 1) {
				snprintf(last, sizeof last, "%s%d", argv[argc - 1], i);
				args[nargs - 1] = last;
			}
			snprintf(out, sizeof out, "%s.%d", argv[3], i);
			pids[i] = start(out, args);
		}
		for (int i = 0; i < n; i++) {
			char tag[32];
			snprintf(tag, sizeof tag, "%d", i);
			report(tag, wait_for(pids[i]));
		}
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "corpus")) {
		FILE *list = fopen(argv[2], "r");
		char line[4096];
		if (!list)
			die(argv[2]);
		while (fgets(line, sizeof line, list)) {
			line[strcspn(line, "\n")] = 0;
			char *direct[] = {line, NULL};
			char *emulated[] = {argv[argc > 3 ? 3 : 0], line, NULL};
			int status;
			if (wait_bounded(start(line, argc > 3 ? emulated : direct), &status))
				report("", status);
			else
				printf("timeout\n");
			fflush(stdout);
		}
		return 0;
	}
	fprintf(stderr, "usage: hostile-helper argc0|run|many|corpus ...\n");
	return 2;
}
