/* The fix uses C library data the program never used: it reads stderr and
 * stdout, writes optind (through a pointer handed to sscanf and directly),
 * and still uses the program's own static. */
#include <stdio.h>
#include <unistd.h>

static long counter;

__attribute__((noinline)) long greet(long i) {
	char num[24];
	counter += i;
	fputs("greet: patched\n", stderr);
	snprintf(num, sizeof num, "%ld", i);
	sscanf(num, "%d", &optind);
	optind = optind * 2;
	fprintf(stdout, "stdout %ld\n", counter);
	fflush(stdout);
	return counter;
}
