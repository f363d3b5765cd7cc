#include "../harness.h"
/* -fipa-ra: caller() may keep a, b, c in registers leaf() does not touch. */
__attribute__((noinline)) long leaf(long x) { return x + 1; }
__attribute__((noinline)) long caller(long a, long b, long c) {
	long r = 0;
	for (long i = 0; i < a; i++) r += leaf(i) * b + c;
	return r;
}
long step(long i) { return caller(10 + i % 5, 3, 7); }
const char *word(long i) { (void)i; return "-"; }
