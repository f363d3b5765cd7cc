/* greet() keeps a running sum in a static. Neither this file nor the program
 * around it (libdata_main.c) ever touches stderr, stdout or optind, so the
 * executable has no copy of them: the C library's are the only ones. */
static long counter;

__attribute__((noinline)) long greet(long i) {
	counter += i;
	return counter;
}
