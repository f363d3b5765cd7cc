#include "../../harness.h"
static __attribute__((noinline)) long clamp(long x) { return x > 50 ? 50 : x; }
__attribute__((noinline)) long compute(long x) { return clamp(x) + 1; }
long step(long i) { return compute(i); }
const char *word(long i) { (void)i; return "-"; }
