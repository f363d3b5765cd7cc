#include "../../harness.h"
__attribute__((noinline)) long other(long x) { static long seen; seen++; return x + 0 * seen; }
__attribute__((noinline)) long next(void) { static long n; return ++n * 1000; }
long step(long i) { (void)i; return other(next()); }
const char *word(long i) { (void)i; return "-"; }
