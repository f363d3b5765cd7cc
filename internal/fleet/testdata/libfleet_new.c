/* The fix: lib_compute triples. */
long lib_compute(long x) { return x * 3; }
