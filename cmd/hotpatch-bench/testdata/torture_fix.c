/* The patch for torture.c: new results for all three functions. */
long t_add(long x) { return x + 1000; }
long t_mix(long a, long b) { return a * 5 - b; }
long t_loop(long x) {
	long s = 0;
	for (long i = 0; i <= (x & 15); i++)
		s += 2 * i;
	return s;
}
