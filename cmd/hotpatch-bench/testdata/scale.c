/* scale: a one-thread idle process of the fleet (hotpatch-bench's scale
 * rows). Calls scale_fn every 100 ms; prints "ready" after the first call.
 * SALT (a string) gives each build a build-id of its own, so that a
 * host-wide apply finds only this run's processes. */
#include <stdio.h>
#include <unistd.h>

#ifndef SALT
#define SALT ""
#endif
__attribute__((used)) static const char salt[] = SALT;

__attribute__((noinline)) long scale_fn(long x) { return 2 * x + 1; }

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	volatile long sink = scale_fn(1);
	printf("ready\n");
	for (long i = 0;; i++) {
		sink += scale_fn(i);
		usleep(100000);
	}
}
