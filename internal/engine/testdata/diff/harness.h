/* Shared main of the diff-mode test programs. Each case defines
 *   long step(long i);   const char *word(long i);
 * Run with no arguments it prints "i step(i) word(i)" every 10 ms forever;
 * with START COUNT it prints COUNT lines from START and exits (how the test
 * learns what a program built from NEW prints). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

long step(long i);
const char *word(long i);

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	long start = argc > 2 ? atol(argv[1]) : 1, n = argc > 2 ? atol(argv[2]) : -1;
	for (long i = start; n < 0 || i < start + n; i++) {
		long v = step(i);
		printf("%ld %ld %s\n", i, v, word(i));
		if (n < 0)
			usleep(10000);
	}
	return 0;
}
