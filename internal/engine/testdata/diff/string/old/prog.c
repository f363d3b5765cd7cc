#include "../../harness.h"
long step(long i) { return i; }
__attribute__((noinline)) const char *word(long i) { return i % 2 ? "odd" : "even"; }
