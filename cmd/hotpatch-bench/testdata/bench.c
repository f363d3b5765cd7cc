/* Target for hotpatch-bench pause, latency, scale and memory measurements.
 *
 * usage: bench THREADS busy|idle
 *
 * THREADS threads in all (the main thread is one of them) call compute() and
 * check every result: before the patch compute(x) == 2x+1, after it 3x+1
 * (bench_fix.c). "busy" threads never sleep: they call it, then do about a
 * microsecond of other work (work()), as a CPU-bound service would; "idle"
 * threads call it once per 100 ms and otherwise sleep in nanosleep, as a
 * mostly idle service blocked in the kernel would.
 *
 * Why not call compute back to back: hotpatch's default (stack) consistency
 * model waits for a moment when no thread is inside a function being
 * replaced. A thread that spends most of its time inside compute makes such
 * moments rare, and with 256 of them, nonexistent: that would measure the
 * retry loop, not the pause. With ~0.2% of each thread's time in compute,
 * a stop finds every thread outside it most of the time.
 * memfn0..memfn7 exist only to be patched one by one by the memory benchmark.
 * A wrong result is printed to stderr and makes the process exit with 3, so
 * the benchmark notices it. "ready" is printed once every thread runs. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long compute(long x) { return 2 * x + 1; }

#define MEMFN(k) __attribute__((noinline)) long memfn##k(long x) { return x + k; }
MEMFN(0) MEMFN(1) MEMFN(2) MEMFN(3) MEMFN(4) MEMFN(5) MEMFN(6) MEMFN(7)

static long (*volatile memfns[])(long) = {memfn0, memfn1, memfn2, memfn3, memfn4, memfn5, memfn6, memfn7};

static int busy;
static volatile long started;

static void check(long x) {
	long r = compute(x);
	if (r != 2 * x + 1 && r != 3 * x + 1) {
		fprintf(stderr, "WRONG compute(%ld) = %ld\n", x, r);
		exit(3);
	}
}

/* work stands for the rest of a service's code: ~1 µs of dependent
 * multiplications that the compiler cannot remove. */
static volatile unsigned long sink;
static void work(void) {
	unsigned long a = sink;
	for (int k = 0; k < 400; k++)
		a = a * 6364136223846793005UL + k;
	sink = a;
}

static void *worker(void *arg) {
	(void)arg;
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	for (long i = 1;; i++) {
		check(i);
		if (busy)
			work();
		else {
			struct timespec ts = {0, 100 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: bench THREADS busy|idle\n");
		return 2;
	}
	int n = atoi(argv[1]);
	busy = strcmp(argv[2], "busy") == 0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < 8; i++) /* touch them once, as real code would */
		memfns[i](i);
	for (int i = 1; i < n; i++) {
		pthread_t t;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 64 * 1024);
		if (pthread_create(&t, &a, worker, NULL) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < n - 1)
		usleep(1000);
	printf("ready %d\n", n);
	worker(NULL);
}
