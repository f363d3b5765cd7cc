/* A target that measures how long it was stopped: its main thread spins
 * calling compute() and, between two consecutive snapshots, counts the time
 * it was neither running (CLOCK_THREAD_CPUTIME_ID) nor waiting for a CPU
 * (run_delay, the second field of /proc/self/task/TID/schedstat, see
 * Documentation/scheduler/sched-stats.rst): time it stood still, stopped by
 * a tracer. It keeps the largest such gap. Each line on stdin makes a second
 * thread wait until the main thread has finished one more loop (so that a
 * stop just ended is counted), then print "maxoff NS" (the largest gap since
 * the last line, then reset), "maxwall NS" (the largest wall-clock time
 * between two snapshots since the last line, then reset: it also counts the
 * time spent running or waiting for a CPU) and "v N" with N = compute(1). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long compute(long x) { return x * 2; }

static atomic_long maxoff, maxwall, asked, seen;
static volatile long sink;

static long ns(clockid_t c) {
	struct timespec ts;
	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static long run_delay(int fd) {
	char b[128];
	ssize_t n = pread(fd, b, sizeof b - 1, 0);
	long run, delay;
	if (n <= 0)
		exit(3);
	b[n] = 0;
	if (sscanf(b, "%ld %ld", &run, &delay) != 2)
		exit(3);
	return delay;
}

/* snap reads the three clocks at one instant: run_delay changes whenever the
 * thread is switched out and back in, so equal readings around the two
 * clocks mean it ran throughout. */
static void snap(int fd, long *w, long *c, long *d) {
	for (;;) {
		long d1 = run_delay(fd);
		*w = ns(CLOCK_MONOTONIC);
		*c = ns(CLOCK_THREAD_CPUTIME_ID);
		*d = run_delay(fd);
		if (*d == d1)
			return;
	}
}

static void *reporter(void *arg) {
	char line[64];
	(void)arg;
	while (fgets(line, sizeof line, stdin)) {
		long a = atomic_fetch_add(&asked, 1) + 1;
		while (atomic_load(&seen) != a)
			usleep(100);
		printf("maxoff %ld\n", atomic_exchange(&maxoff, 0));
		printf("maxwall %ld\n", atomic_exchange(&maxwall, 0));
		printf("v %ld\n", compute(1));
	}
	exit(0);
}

int main(void) {
	char path[64];
	pthread_t th;
	long w0, c0, d0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", gettid());
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		printf("no schedstat\n");
		return 2;
	}
	pthread_create(&th, NULL, reporter, NULL);
	snap(fd, &w0, &c0, &d0);
	printf("ready\n");
	for (long i = 1;; i++) {
		long w, c, d, off, a = atomic_load(&asked);
		sink += compute(i);
		snap(fd, &w, &c, &d);
		off = (w - w0) - (c - c0) - (d - d0);
		if (off > atomic_load(&maxoff))
			atomic_store(&maxoff, off);
		if (w - w0 > atomic_load(&maxwall))
			atomic_store(&maxwall, w - w0);
		w0 = w, c0 = c, d0 = d;
		atomic_store(&seen, a); /* every gap before a snapshot taken after ask a is counted */
	}
}
