/* The fix for scale.c's scale_fn. */
long scale_fn(long x) { return 3 * x + 1; }
