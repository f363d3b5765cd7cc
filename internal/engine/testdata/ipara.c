/* GCC's -fipa-ra lets caller() keep values in registers leaf() does not
 * clobber. A replacement leaf compiled on its own may clobber them. */
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) long leaf(long x) { return x + 1; }
__attribute__((noinline)) long caller(long a, long b, long c) {
	long r = 0;
	for (long i = 0; i < a; i++) r += leaf(i) * b + c;
	return r;
}
int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) { printf("%ld\n", caller(10, 3, 7)); usleep(20000); }
}
