/* -fipa-ra in a library: the static caller() may keep values in registers
 * that the exported leaf() does not clobber (leaf is called directly, not
 * through the PLT, when built with -fno-semantic-interposition). Stripped,
 * only leaf and run are visible by name. */
__attribute__((noinline)) long leaf(long x) { return x + 1; }
static __attribute__((noinline)) long caller(long a, long b, long c) {
	long r = 0;
	for (long i = 0; i < a; i++) r += leaf(i) * b + c;
	return r;
}
long run(void) { return caller(10, 3, 7); }
