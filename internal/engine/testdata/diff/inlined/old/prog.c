#include "../../harness.h"
static inline long scale(long x) { return x * 4; }
__attribute__((noinline)) long left(long x) { return scale(x) + 1; }
__attribute__((noinline)) long right(long x) { return scale(x) - 1; }
long step(long i) { return left(i) * 1000 + right(i); }
const char *word(long i) { (void)i; return "-"; }
