long ra(long x) { return x + 1001; }
long rb(long x) { return x * 3; }
