/* Four threads call work() in a loop and check every result is the old or
 * the new function's; the new one sleeps 2 ms inside, so that threads are
 * nearly always in the patch's code (with a return address into it) when it
 * is reverted. The main thread prints work(0). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) long work(long x) { return x + 1; }

static void *worker(void *arg) {
	for (long x = (long)arg;; x = (x + 1) & 0xffff) {
		long r = work(x);
		if (r != x + 1 && r != x + 1001) {
			fprintf(stderr, "WRONG x=%ld work=%ld\n", x, r);
			exit(3);
		}
	}
	return NULL;
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t;
	for (long i = 0; i < 4; i++) pthread_create(&t, NULL, worker, (void *)(i * 1000));
	for (;;) {
		printf("%ld\n", work(0));
		usleep(10000);
	}
}
