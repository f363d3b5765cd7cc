long outer(long x) { return x + 1001; }
long inner(long x) { return x + 2001; }
