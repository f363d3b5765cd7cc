#include "../../harness.h"
__attribute__((noinline)) long compute(long x) {
	static long table[4] = {10, 20, 30, 40};
	return x + table[x % 4];
}
long step(long i) { return compute(i); }
const char *word(long i) { (void)i; return "-"; }
