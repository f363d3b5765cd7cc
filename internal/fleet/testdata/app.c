/* A process of the fleet: prints "i lib_compute(i)" every 50 ms.
 * VARIANT makes two different executables from this source. */
#include <stdio.h>
#include <unistd.h>

long lib_compute(long x);

#ifndef VARIANT
#define VARIANT 1
#endif

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (long i = 1;; i++) {
		printf("%ld %ld\n", i * VARIANT, lib_compute(i * VARIANT));
		usleep(50000);
	}
}
