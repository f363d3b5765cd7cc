/* The shared library the fleet tests patch: lib_compute doubles.
 * Built with -DOTHER it is a different build (another build-id) of the same
 * library, which a patch for the first must never touch. */
__attribute__((noinline)) long lib_compute(long x) {
#ifdef OTHER
	return x + x;
#else
	return x * 2;
#endif
}
