#include "../../harness.h"
__attribute__((noinline)) long other(long x) { return x; }
__attribute__((noinline)) long next(void) { static long n; return ++n; }
long step(long i) { (void)i; return other(next()); }
const char *word(long i) { (void)i; return "-"; }
