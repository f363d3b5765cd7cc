/* The shared library the fleet tests patch: lib_compute doubles.
 * Built with -DOTHER it is a different build (another build-id) of the same
 * library, which a patch for the first must never touch. Each test run
 * passes a unique -DSALT so its build-id is its own: host-wide applies of
 * test runs in parallel (go test ./... runs packages at once) must not find
 * each other's processes. */
#ifdef SALT
__attribute__((used)) const char fleet_salt[] = SALT;
#endif

__attribute__((noinline)) long lib_compute(long x) {
#ifdef OTHER
	return x + x;
#else
	return x * 2;
#endif
}
