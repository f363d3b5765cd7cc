#include "../../harness.h"
__attribute__((noinline)) long compute(long x) { return x; }
long step(long i) { return compute(i); }
const char *word(long i) { (void)i; return "-"; }
