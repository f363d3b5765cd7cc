#include "../../harness.h"
template <typename T> __attribute__((noinline)) T scaled(T x) { return x * 3; }
struct Acc {
	long base;
	__attribute__((noinline)) long add(long x);
};
long Acc::add(long x) { return base + scaled<long>(x) + 1; }
static Acc acc = {100};
long step(long i) { return acc.add(i); }
const char *word(long i) { (void)i; return "-"; }
