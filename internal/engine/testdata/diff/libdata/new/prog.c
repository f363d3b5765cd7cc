/* The fix uses library data the program never used: it reads stderr, stdout,
 * environ and timezone, writes optind (through a pointer handed to sscanf
 * and directly) and another library's exported global, and still uses the
 * program's own static. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

extern char **environ;
extern int libdata_hits; /* libdata_lib.c */

static long counter;

__attribute__((noinline)) long greet(long i) {
	char num[24];
	counter += i;
	fputs("greet: patched\n", stderr);
	snprintf(num, sizeof num, "%ld", i);
	sscanf(num, "%d", &optind);
	optind = optind * 2;
	libdata_hits += 1;
	fprintf(stdout, "stdout %ld env=%d tz=%ld\n", counter, environ != NULL && environ[0] != NULL, timezone);
	fflush(stdout);
	return counter;
}
