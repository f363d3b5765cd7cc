/* tiny.c: a small shared object used as a fuzzing seed. */
__thread int t;
int v = 1;
static int s(int x) { return x + v; }
int f(int x) { return s(x) + t; }
