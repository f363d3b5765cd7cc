/* Target for the overhead benchmark: calls compute() in a tight loop and
 * prints "calls/s N" for every window of WINDOW_MS milliseconds.
 *
 * Built twice from this file: as is (the defective compute, patched live to
 * overhead_fix.c's) and with -DFIXED (overhead_fix.c compiled in natively).
 * The two then differ only by the jump at the patched function's entry and
 * the placement of the new code. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifdef FIXED
#include "overhead_fix.c"
#else
__attribute__((noinline)) unsigned long compute(unsigned long x) {
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15UL;
	return x ^ (x >> 28); /* the "bug": 28 instead of 29 */
}
#endif

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
	double window = (argc > 1 ? atoi(argv[1]) : 200) / 1000.0;
	setvbuf(stdout, NULL, _IOLBF, 0);
	unsigned long acc = 0, i = 0;
	for (;;) {
		double t0 = now(), t;
		unsigned long calls = 0;
		do {
			/* 4096 calls between clock reads keep the clock out of the cost. */
			for (int k = 0; k < 4096; k++)
				acc += compute(i++);
			calls += 4096;
			t = now();
		} while (t - t0 < window);
		printf("calls/s %.0f %lu\n", calls / (t - t0), acc & 1);
	}
}
