/* Target for the torture run: THREADS threads (the main thread, which
 * reports, is one of them) call the patched functions and check every result.
 *
 * usage: torture THREADS SLEEPERS [WORK]
 *
 * Each function has an old result (this file) and a new one (torture_fix.c);
 * a call may return either, depending on whether the patch was applied when
 * the call entered the function, and nothing else. SLEEPERS of the workers
 * sleep 200 µs in nanosleep between calls and check that nanosleep never
 * fails: ptrace stops and system calls injected on a sleeping thread must be
 * invisible to it (the kernel restarts the sleep, see restart_syscall(2)).
 * The others spin: after each round of calls they do WORK (default 400)
 * multiply-adds, ~1 µs, standing for the rest of a service's code. Without
 * it a thread would be inside a patched function most of the time, and
 * hotpatch's default (stack) consistency model, which waits for a moment
 * when no thread is inside a function being replaced, would (rightly) find
 * none among 56 spinners. Every 20 ms the main thread prints
 *     stat calls=N old=N new=N wrong=N syserr=N threads=N mono=NS
 * (mono: CLOCK_MONOTONIC in ns when the line was made, so that the reader can
 * tell a line made after a given moment),
 * and the first wrong results go to stderr. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long t_add(long x) { return x + 1; }
__attribute__((noinline)) long t_mix(long a, long b) { return a * 3 + b; }
/* A loop keeps threads inside the function (and in its first bytes) often,
 * which exercises the "thread inside the replaced bytes: retry" path. */
__attribute__((noinline)) long t_loop(long x) {
	long s = 0;
	for (long i = 0; i <= (x & 15); i++)
		s += i;
	return s;
}

static long add_old(long x) { return x + 1; }
static long add_new(long x) { return x + 1000; }
static long mix_old(long a, long b) { return a * 3 + b; }
static long mix_new(long a, long b) { return a * 5 - b; }
static long loop_old(long x) { long n = x & 15; return n * (n + 1) / 2; }
static long loop_new(long x) { long n = x & 15; return n * (n + 1); }

struct counters {
	unsigned long calls, old, new_, wrong, syserr;
	char pad[64 - 5 * sizeof(unsigned long)];
} __attribute__((aligned(64)));

static struct counters *ctr;
static int nworkers, nsleepers;
static volatile int started;
static volatile int reported;
static int work_iters = 400;
static volatile unsigned long sink;

static void work(void) {
	unsigned long a = sink;
	for (int k = 0; k < work_iters; k++)
		a = a * 6364136223846793005UL + k;
	sink = a;
}

static void bad(const char *what, long x, long got, long a, long b) {
	if (__atomic_add_fetch(&reported, 1, __ATOMIC_RELAXED) <= 10)
		fprintf(stderr, "WRONG %s(%ld) = %ld, want %ld (old) or %ld (new)\n", what, x, got, a, b);
}

/* one records a result: old, new or wrong. */
static void one(struct counters *c, const char *what, long x, long got, long a, long b) {
	if (got == a)
		__atomic_store_n(&c->old, c->old + 1, __ATOMIC_RELAXED);
	else if (got == b)
		__atomic_store_n(&c->new_, c->new_ + 1, __ATOMIC_RELAXED);
	else {
		__atomic_store_n(&c->wrong, c->wrong + 1, __ATOMIC_RELAXED);
		bad(what, x, got, a, b);
	}
}

static void *worker(void *arg) {
	long id = (long)arg;
	struct counters *c = &ctr[id];
	int sleeper = id < nsleepers;
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	for (long i = id * 1000003;; i++) {
		one(c, "t_add", i, t_add(i), add_old(i), add_new(i));
		one(c, "t_mix", i, t_mix(i, id), mix_old(i, id), mix_new(i, id));
		one(c, "t_loop", i, t_loop(i), loop_old(i), loop_new(i));
		__atomic_store_n(&c->calls, c->calls + 3, __ATOMIC_RELAXED);
		if (!sleeper)
			work();
		else {
			struct timespec ts = {0, 200 * 1000};
			if (nanosleep(&ts, NULL) != 0) {
				__atomic_store_n(&c->syserr, c->syserr + 1, __ATOMIC_RELAXED);
				if (__atomic_add_fetch(&reported, 1, __ATOMIC_RELAXED) <= 10)
					fprintf(stderr, "SYSERR nanosleep: %s\n", strerror(errno));
			}
		}
	}
	return NULL;
}

static int count_threads(void) {
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int n = -1;
	while (f && fgets(line, sizeof line, f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

int main(int argc, char **argv) {
	if (argc != 3 && argc != 4) {
		fprintf(stderr, "usage: torture THREADS SLEEPERS [WORK]\n");
		return 2;
	}
	/* Optional: run at lower priority, so a torture run inside a shared CI
	 * machine's test suite does not starve everything else. */
	const char *niceEnv = getenv("HOTPATCH_BENCH_NICE");
	errno = 0;
	if (niceEnv && nice(atoi(niceEnv)) == -1 && errno != 0)
		perror("nice");
	int n = atoi(argv[1]);
	nsleepers = atoi(argv[2]);
	nworkers = n - 1;
	if (argc == 4)
		work_iters = atoi(argv[3]);
	setvbuf(stdout, NULL, _IOLBF, 0);
	ctr = aligned_alloc(64, sizeof(struct counters) * (nworkers + 1));
	memset(ctr, 0, sizeof(struct counters) * (nworkers + 1));
	for (long i = 0; i < nworkers; i++) {
		pthread_t t;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 64 * 1024);
		/* Workers 0..SLEEPERS-1 sleep between calls, the rest spin. */
		if (pthread_create(&t, &a, worker, (void *)i) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	while (started < nworkers)
		usleep(1000);
	printf("ready %d\n", n);
	for (;;) {
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
		struct counters s = {0};
		for (int i = 0; i < nworkers + 1; i++) {
			s.calls += __atomic_load_n(&ctr[i].calls, __ATOMIC_RELAXED);
			s.old += __atomic_load_n(&ctr[i].old, __ATOMIC_RELAXED);
			s.new_ += __atomic_load_n(&ctr[i].new_, __ATOMIC_RELAXED);
			s.wrong += __atomic_load_n(&ctr[i].wrong, __ATOMIC_RELAXED);
			s.syserr += __atomic_load_n(&ctr[i].syserr, __ATOMIC_RELAXED);
		}
		struct timespec mono;
		clock_gettime(CLOCK_MONOTONIC, &mono);
		printf("stat calls=%lu old=%lu new=%lu wrong=%lu syserr=%lu threads=%d mono=%lld\n", s.calls, s.old, s.new_,
		       s.wrong, s.syserr, count_threads(), (long long)mono.tv_sec * 1000000000LL + mono.tv_nsec);
	}
}
