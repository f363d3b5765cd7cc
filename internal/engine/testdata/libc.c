/* report() formats with snprintf and counts calls in a static variable. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int calls;

__attribute__((noinline)) void report(char *buf, size_t n, long v) {
	calls++;
	snprintf(buf, n, "v1 value=%ld calls=%d len=%zu", v, calls, strlen(buf));
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	char buf[128];
	for (long i = 1;; i++) {
		buf[0] = 0;
		report(buf, sizeof buf, i);
		puts(buf);
		usleep(20000);
	}
}
