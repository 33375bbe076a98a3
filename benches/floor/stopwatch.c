/* stopwatch.c - run a command and time it from outside: start to its first
 * byte on stdout, start to its exit, and its peak RSS.
 *
 * Usage:  stopwatch CMD [ARG...]
 *
 * CMD's stdout goes through a pipe to ours (copied as it comes); its stdin is
 * /dev/null, its stderr ours. When CMD has exited, one line goes to stderr:
 *
 *   STOPWATCH first_us=F exit_us=E maxrss_kib=R status=S
 *
 * F is -1 when CMD printed nothing; S is the exit status, or 128+N for
 * signal N. Times count from just before the spawn, on CLOCK_MONOTONIC; the
 * exit time is when wait4 returns, after the kernel has torn the process
 * down (its VM included: closing the last KVM fd frees the VM in exit).
 *
 * The peak RSS is wait4's ru_maxrss. Linux keeps the high-water mark of the
 * address space a process replaces at exec, so a child spawned from a big
 * process (Python) would report the parent's size: this small C program is
 * the parent for that reason. Its own mark (about 1 MiB, see `stopwatch
 * /bin/true`) is the floor under every figure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long long now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CMD [ARG...]\n", argv[0]);
		return 125;
	}
	int out[2];
	if (pipe2(out, O_CLOEXEC) < 0) {
		perror("pipe2");
		return 125;
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);

	long long t0 = now_us();
	pid_t pid;
	int err = posix_spawnp(&pid, argv[1], &fa, NULL, argv + 1, environ);
	if (err) {
		errno = err;
		perror(argv[1]);
		return 125;
	}
	close(out[1]);

	long long first = -1;
	char buf[65536];
	for (;;) {
		ssize_t n = read(out[0], buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (first < 0)
			first = now_us() - t0;
		for (ssize_t at = 0; at < n;) {
			ssize_t w = write(1, buf + at, (size_t)(n - at));
			if (w <= 0)
				break;
			at += w;
		}
	}
	int status;
	struct rusage ru;
	while (wait4(pid, &status, 0, &ru) < 0) {
		if (errno != EINTR) {
			perror("wait4");
			return 125;
		}
	}
	long long done = now_us() - t0;
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	fprintf(stderr, "STOPWATCH first_us=%lld exit_us=%lld maxrss_kib=%ld status=%d\n",
		first, done, ru.ru_maxrss, code);
	return 0;
}
