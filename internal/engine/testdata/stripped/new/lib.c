/* A library whose fix touches a static function (and its static data). */
static long calls;
static __attribute__((noinline)) long scale(long x) { calls++; return x * 3; }
long lib_step(long i) { return scale(i); }
long lib_calls(void) { return calls; }
