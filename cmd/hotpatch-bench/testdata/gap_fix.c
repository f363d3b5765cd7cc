/* The fix for gap.c's compute. */
long compute(long x) { return 3 * x + 1; }
