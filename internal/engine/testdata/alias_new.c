/* The fix keeps alias_fn an alias of impl. */
long impl(long x) { return x + 1001; }
extern long alias_fn(long x) __attribute__((alias("impl")));
