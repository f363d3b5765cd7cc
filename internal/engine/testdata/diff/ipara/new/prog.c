#include "../../harness.h"
/* The new leaf clobbers every caller-saved register (the asm says so), so
 * GCC must compile caller() differently: it is patched too. */
__attribute__((noinline)) long leaf(long x) {
	__asm__ volatile("" ::: "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
	return x + 1;
}
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
