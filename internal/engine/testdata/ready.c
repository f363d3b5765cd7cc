/* 64 threads hammer ra() and rb(), checking every result is the old or the
 * new function's value; the main thread prints the counts. Build with
 * -fpatchable-function-entry=7,5 to make every function patch-ready.
 * plain() opts out with the attribute, for mixed patches. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) long ra(long x) { return x + 1; }
__attribute__((noinline)) long rb(long x) { return x * 2; }
__attribute__((noinline, patchable_function_entry(0, 0))) long plain(long x) { return x - 1; }

static atomic_long olds, news;
static int nthreads = 64;

static void *worker(void *arg) {
	for (long x = (long)arg;; x = (x + 1) & 0xfffff) {
		long a = ra(x), b = rb(x), c = plain(x);
		if (a == x + 1 && b == x * 2) atomic_fetch_add(&olds, 1);
		else if (a == x + 1001 && b == x * 3) atomic_fetch_add(&news, 1);
		else if ((a != x + 1 && a != x + 1001) || (b != x * 2 && b != x * 3)) {
			fprintf(stderr, "WRONG x=%ld ra=%ld rb=%ld\n", x, a, b);
			exit(3);
		}
		if (c != x - 1 && c != x - 1001) {
			fprintf(stderr, "WRONG x=%ld plain=%ld\n", x, c);
			exit(3);
		}
	}
	return NULL;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1) nthreads = atoi(argv[1]);
	pthread_t t;
	for (long i = 0; i < nthreads; i++) pthread_create(&t, NULL, worker, (void *)(i * 1000));
	printf("ready %ld %ld %ld\n", ra(0), rb(1), plain(0));
	for (;;) {
		printf("%ld %ld %ld\n", ra(0), rb(1), plain(0));
		usleep(10000);
	}
}
