/* Two identical static functions, told apart by nothing in the code that
 * uses them (a table of pointers): without symbols, a fix to one of them
 * cannot be located. */
#include "../../../diff/harness.h"
static __attribute__((noinline)) long twice_a(long x) { return x * 3; }
static __attribute__((noinline)) long twice_b(long x) { return x * 2; }
static long (*const ops[2])(long) = { twice_a, twice_b };
long step(long i) { return ops[i & 1](i); }
const char *word(long i) { (void)i; return "-"; }
