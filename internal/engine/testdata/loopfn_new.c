int loopfn(int n) { return n + 1000; }
