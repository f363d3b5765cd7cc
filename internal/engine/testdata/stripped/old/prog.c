/* An executable whose fix touches a static function (and its static data). */
#include "../../diff/harness.h"
static long calls;
static __attribute__((noinline)) long scale(long x) { calls++; return x * 2; }
long step(long i) { return scale(i); }
const char *word(long i) { (void)i; return calls > 0 ? "-" : "?"; }
