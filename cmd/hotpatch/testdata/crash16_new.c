long f1(long x) { return x + 101; }
long f2(long x) { return x + 102; }
long f3(long x) { return x + 103; }
