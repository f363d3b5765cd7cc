/* Unit-test translation unit, after the fix. */
int shared = 5;
int added_global;
static int table[3] = {1, 2, 3};
static const int limits[2] = {12, 20};
static __attribute__((noinline)) int helper(int x) { return x + table[x % 3]; }
static __attribute__((noinline)) int fresh(int x) { return x ^ 7; }
int z(void) { static int extra; return ++extra; }
int y(void) { static int n; return ++n; }
int a(void) { static int first; static int second; return ++first + ++second; }
int b(int x) { return helper(x) * 2 + fresh(x); }
int c(int x) { return x < limits[x & 1] ? x : limits[x & 1]; }
const char *msg(void) { return "hello, world"; }
int unchanged(int x) { return x + shared; }
