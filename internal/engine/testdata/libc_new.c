/* The new report(): calls libc (snprintf, strlen — an IFUNC) and keeps using
 * the target's own static `calls` (bound to the running program's copy). */
#include <stdio.h>
#include <string.h>

static int calls;

void report(char *buf, size_t n, long v) {
	calls += 1;
	snprintf(buf, n, "v2 value=%ld calls=%d len=%zu", v, calls, strlen("abc"));
}
