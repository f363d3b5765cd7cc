/* Target for hotpatch-bench gap: every thread measures its own largest loop
 * gap, the figure the target's clients feel.
 *
 * usage: gap THREADS busy|idle SLEEP_US SHMFILE
 *
 * THREADS threads in all (the main thread is one of them) loop: call compute()
 * and check its result (2x+1 before the patch, 3x+1 after: gap_fix.c), then
 * either ~1 µs of other work (busy) or nanosleep(SLEEP_US) (idle), then read
 * CLOCK_MONOTONIC. The gap of one iteration is the time since the previous
 * one (busy) or how late the sleep ended (idle: elapsed minus SLEEP_US); each
 * thread keeps its largest in its slot of SHMFILE, mapped MAP_SHARED with the
 * benchmark.
 *
 * SHMFILE: 64-byte cache lines. Line 0: gen (u64, written by the benchmark).
 * Line 1+i, thread i: gen (u64: the last gen this thread saw), max (u64 ns,
 * since it saw that gen), iters (u64). A thread that sees a new gen resets
 * its max and publishes the gen (max first), dropping the iteration that
 * straddled the change; the benchmark waits for every thread to publish the
 * new gen before the operation it measures, and for every thread to finish
 * one more iteration after it, before reading the maxima. A wrong result
 * exits with 3. "ready" is printed once every thread runs. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long compute(long x) { return 2 * x + 1; }

struct slot {
	volatile uint64_t gen, max, iters;
	char pad[64 - 3 * sizeof(uint64_t)];
};

static struct slot *shm; /* shm[0].gen is the benchmark's gen */
static int busy;
static long sleep_ns;
static volatile long started;

static uint64_t now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static volatile unsigned long sink;
static void work(void) {
	unsigned long a = sink;
	for (int k = 0; k < 400; k++)
		a = a * 6364136223846793005UL + k;
	sink = a;
}

static void run(int i) {
	struct slot *s = &shm[1 + i];
	uint64_t prev = now();
	for (long x = 1;; x++) {
		long r = compute(x);
		if (r != 2 * x + 1 && r != 3 * x + 1) {
			fprintf(stderr, "WRONG compute(%ld) = %ld\n", x, r);
			exit(3);
		}
		if (busy)
			work();
		else {
			struct timespec ts = {sleep_ns / 1000000000, sleep_ns % 1000000000};
			nanosleep(&ts, NULL);
		}
		uint64_t t = now();
		uint64_t g = __atomic_load_n(&shm[0].gen, __ATOMIC_ACQUIRE);
		if (g != s->gen) {
			s->max = 0;
			__atomic_store_n(&s->gen, g, __ATOMIC_RELEASE);
		} else {
			uint64_t d = t - prev;
			if (!busy)
				d = d > (uint64_t)sleep_ns ? d - (uint64_t)sleep_ns : 0;
			if (d > s->max)
				s->max = d;
		}
		__atomic_store_n(&s->iters, s->iters + 1, __ATOMIC_RELEASE);
		prev = t;
	}
}

static void *worker(void *arg) {
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	run((int)(long)arg);
	return NULL;
}

int main(int argc, char **argv) {
	if (argc != 5) {
		fprintf(stderr, "usage: gap THREADS busy|idle SLEEP_US SHMFILE\n");
		return 2;
	}
	int n = atoi(argv[1]);
	busy = strcmp(argv[2], "busy") == 0;
	sleep_ns = atol(argv[3]) * 1000;
	int fd = open(argv[4], O_RDWR);
	if (n < 1 || fd < 0) {
		perror("gap");
		return 2;
	}
	shm = mmap(NULL, 64 * (size_t)(n + 1), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (shm == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	close(fd);
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 1; i < n; i++) {
		pthread_t t;
		pthread_attr_t a;
		pthread_attr_init(&a);
		pthread_attr_setstacksize(&a, 64 * 1024);
		if (pthread_create(&t, &a, worker, (void *)(long)i) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < n - 1)
		usleep(1000);
	printf("ready %d\n", n);
	run(0);
}
