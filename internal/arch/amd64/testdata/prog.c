/* A program whose functions the tests redirect by patching the executable
   file with PlanRedirect's plan, then run to check what it does. */
#include <stdio.h>
#include <stdlib.h>

#define NI __attribute__((noinline, noipa))

/* At -O2: lea 0x1(%rdi),%eax; ret (4 bytes) followed by alignment padding. */
NI int tiny(int x) { return x + 1; }
NI int tiny_fixed(int x) { return x + 1000; }

NI long work(long n) {
	long s = 0;
	for (long i = 0; i < n; i++)
		s += i * i % 7;
	return s;
}
NI long work_fixed(long n) { return -n; }

int main(int argc, char **argv) {
	int x = argc > 1 ? atoi(argv[1]) : 5;
	printf("%d %ld\n", tiny(x), work(x));
	return 0;
}
