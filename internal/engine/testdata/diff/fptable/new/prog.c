#include "../../harness.h"
static __attribute__((noinline)) long twice(long x) { return 2 * x; }
static __attribute__((noinline)) long thrice(long x) { return 3 * x + 1; }
static long (*const volatile ops[])(long) = { twice, thrice };
long step(long i) { return ops[i % 2](i); }
const char *word(long i) { (void)i; return "-"; }
