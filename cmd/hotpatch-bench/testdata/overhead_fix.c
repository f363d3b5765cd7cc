/* The fixed compute of overhead.c: a patch object, and (included by
 * overhead.c with -DFIXED) the body of the natively fixed binary. */
__attribute__((noinline)) unsigned long compute(unsigned long x) {
	x ^= x >> 31;
	x *= 0x9e3779b97f4a7c15UL;
	return x ^ (x >> 29);
}
