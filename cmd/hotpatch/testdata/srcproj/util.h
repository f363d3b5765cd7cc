static inline int scale(int x) { return x * 2; }
int compute(int x);
int other(int x);
