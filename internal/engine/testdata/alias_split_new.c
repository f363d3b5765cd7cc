/* The fix gives the two names different code: refused, one address takes one redirect. */
long impl(long x) { return x + 1001; }
long alias_fn(long x) { return x + 2001; }
