/* Identical static functions: told apart only by who calls them. */
static __attribute__((noinline)) long twice_a(long x) { return x * 2; }
static __attribute__((noinline)) long twice_b(long x) { return x * 2; }
static long counter;
long call_a(long x) { counter++; return twice_a(x) + 1; }
long call_b(long x) { return twice_b(x) + 2 + counter; }
#ifdef TABLE
static long (*const ops[2])(long) = { twice_a, twice_b };
long call_any(long i) { return ops[i & 1](i); }
#endif
