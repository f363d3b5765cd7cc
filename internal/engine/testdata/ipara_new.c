long leaf(long x) { return x + 1; }
