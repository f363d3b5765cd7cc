#include "../../harness.h"
long patched_calls;
__attribute__((noinline)) long compute(long x) { patched_calls++; return x * 10 + (patched_calls > 0); }
long step(long i) { return compute(i); }
const char *word(long i) { (void)i; return "-"; }
