/* scaleapp: a one-thread idle process using libscale.so; calls
 * scale_lib_fn every 100 ms and prints "ready" after the first call. */
#include <stdio.h>
#include <unistd.h>

long scale_lib_fn(long x);

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	volatile long sink = scale_lib_fn(1);
	printf("ready\n");
	for (long i = 0;; i++) {
		sink += scale_lib_fn(i);
		usleep(100000);
	}
}
