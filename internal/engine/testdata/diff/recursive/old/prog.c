#include "../../harness.h"
__attribute__((noinline)) long fib(long n) { return n < 2 ? n : (fib(n - 1) + fib(n - 2)) % 1000003; }
long step(long i) { return fib(i % 20); }
const char *word(long i) { (void)i; return "-"; }
