/* Three functions patched together; prints "a b c" from each. */
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) long f1(long x) { return x + 1; }
__attribute__((noinline)) long f2(long x) { return x + 2; }
__attribute__((noinline)) long f3(long x) { return x + 3; }

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		printf("%ld %ld %ld\n", f1(0), f2(0), f3(0));
		usleep(10000);
	}
}
