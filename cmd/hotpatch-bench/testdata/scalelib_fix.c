/* The fix for scalelib.c's scale_lib_fn. */
long scale_lib_fn(long x) { return 3 * x + 1; }
