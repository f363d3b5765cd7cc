#include "../../harness.h"
template <typename T> __attribute__((noinline)) T scaled(T x) { return x * 2; }
struct Acc {
	long base;
	__attribute__((noinline)) long add(long x);
};
long Acc::add(long x) { return base + scaled<long>(x); }
static Acc acc = {100};
long step(long i) { return acc.add(i); }
const char *word(long i) { (void)i; return "-"; }
