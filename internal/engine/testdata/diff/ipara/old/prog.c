#include "../../harness.h"
/* -fipa-ra: caller() may keep a, b, c in registers leaf() does not touch. */
__attribute__((noinline)) long leaf(long x) { return x + 1; }
__attribute__((noinline)) long caller(long a, long b, long c) {
	long r = 0;
	for (long i = 0; i < a; i++) r += leaf(i) * b + c;
	return r;
}
/* Through a pointer, so that step() (and main) assume nothing about
 * caller()'s registers: the hazard stays between leaf() and caller(). */
long (*volatile caller_ptr)(long, long, long) = caller;
long step(long i) { return caller_ptr(10 + i % 5, 3, 7); }
const char *word(long i) { (void)i; return "-"; }
