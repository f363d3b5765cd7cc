/* 16 threads call f1, f2, f3 in tight loops; each result must be the old or
 * the new function's value. Any other value: report and exit 3.
 * usage: crash16 [single]: with "single", no threads are created and the
 * main thread calls them between its prints (a process of one thread, which
 * hotpatch applies in one stop). */
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

static void step(long x) {
	check(f1(x), x, 1);
	check(f2(x), x, 2);
	check(f3(x), x, 3);
}

static void *worker(void *a) {
	for (long x = (long)a;; x = (x + 1) & 0xffff)
		step(x);
	return NULL;
}

int main(int argc, char **argv) {
	int single = argc > 1 && argv[1][0] == 's';
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t;
	for (long i = 0; i < 16 && !single; i++) pthread_create(&t, NULL, worker, (void *)(i * 100));
	for (long n = 0;; n++) {
		for (long x = 0; single && x < 20000; x++) step((n + x) & 0xffff);
		printf("%ld %ld %ld\n", f1(0), f2(0), f3(0));
		usleep(10000);
	}
}
