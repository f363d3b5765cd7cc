/* A target for hotpatch tests: prints compute(i) for a growing i.
 * compute is noinline so the call goes through its entry. */
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) long compute(long x) { return x * 2; }

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (long i = 1;; i++) {
		printf("%ld %ld\n", i, compute(i));
		usleep(20000);
	}
}
