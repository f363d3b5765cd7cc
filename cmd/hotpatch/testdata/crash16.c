/* 16 threads call f1, f2, f3 in tight loops; each result must be the old or
 * the new function's value. Any other value: report and exit 3. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) long f1(long x) { return x + 1; }
__attribute__((noinline)) long f2(long x) { return x + 2; }
__attribute__((noinline)) long f3(long x) { return x + 3; }

static void check(long r, long x, long d) {
	if (r != x + d && r != x + 100 + d) {
		fprintf(stderr, "WRONG f%ld(%ld) = %ld\n", d, x, r);
		exit(3);
	}
}

static void *worker(void *a) {
	for (long x = (long)a;; x = (x + 1) & 0xffff) {
		check(f1(x), x, 1);
		check(f2(x), x, 2);
		check(f3(x), x, 3);
	}
	return NULL;
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t;
	for (long i = 0; i < 16; i++) pthread_create(&t, NULL, worker, (void *)(i * 100));
	for (;;) {
		printf("%ld %ld %ld\n", f1(0), f2(0), f3(0));
		usleep(10000);
	}
}
