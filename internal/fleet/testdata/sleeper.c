/* A quiet process of the benchmark fleet: calls lib_compute once a second. */
#include <unistd.h>

long lib_compute(long x);

volatile long sink;

int main(void) {
	for (long i = 1;; i++) {
		sink = lib_compute(i);
		sleep(1);
	}
}
