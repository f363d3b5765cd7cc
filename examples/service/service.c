/* A tiny "service" for the hotpatch demo.
 *
 * It validates user names for a fixed 16-byte buffer (15 characters and the
 * terminating NUL). Version 1.0 has an off-by-one: it accepts a 16-character
 * name, which would overflow the buffer. The fix is in fix.c.
 *
 * The process keeps state that a restart would lose: `served` counts requests
 * since start; the patched code keeps using the running program's copy. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NAME_BUF 16

static unsigned long served;

__attribute__((noinline)) int validate_name(const char *name) {
	served++;
	return strlen(name) <= NAME_BUF; /* BUG: must leave room for the NUL */
}

int main(void) {
	static const char *names[] = {"alice", "0123456789abcdef"};
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (unsigned i = 0;; i++) {
		const char *n = names[i % 2];
		int ok = validate_name(n);
		printf("request %4lu: name of %2zu chars %s\n", served, strlen(n), ok ? "accepted" : "REJECTED");
		usleep(250000);
	}
}
