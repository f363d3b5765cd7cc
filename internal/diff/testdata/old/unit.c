/* Unit-test translation unit, before the fix. */
int shared = 5;
static int table[3] = {1, 2, 3};
static const int limits[2] = {10, 20};
static __attribute__((noinline)) int helper(int x) { return x + table[x % 3]; }
int y(void) { static int n; return ++n; }
int a(void) { static int first; return ++first; }
int b(int x) { return helper(x) * 2; }
int c(int x) { return x < limits[x & 1] ? x : limits[x & 1]; }
const char *msg(void) { return "hello"; }
int unchanged(int x) { return x + shared; }
