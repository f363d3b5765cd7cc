long ra(long x) { return x + 1001; }
long plain(long x) { return x - 1001; }
