#include "../../harness.h"
int limit = 20;
__attribute__((noinline)) long compute(long x) { return x < limit ? x : limit; }
long step(long i) { return compute(i); }
const char *word(long i) { (void)i; return "-"; }
