/* A target that forges hotpatch records, as any unprivileged process can:
 * memfd mappings named "hotpatch:..." with crafted headers.
 *   forge foreign: a region whose name carries terminal escapes and whose
 *                  header is garbage;
 *   forge applying: a well-formed record of a patch "forged" left in state
 *                  applying (as if a hotpatch command had been interrupted).
 * Without an argument it just runs. It prints message() every 20 ms. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef SALT
#define SALT ""
#endif
const char *salt = SALT;

__attribute__((noinline)) const char *message(void) { return "v1"; }

static void *region(const char *name) {
	int fd = memfd_create(name, 0);
	if (fd < 0 || ftruncate(fd, 4096) < 0)
		return NULL;
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

static void header(unsigned char *p, uint32_t state, const char *body) {
	uint32_t v = 1, n = strlen(body);
	uint64_t size = 4096;
	memcpy(p, "HOTPATCH", 8);
	memcpy(p + 8, &v, 4);
	memcpy(p + 12, &state, 4);
	memcpy(p + 16, &n, 4);
	memcpy(p + 24, &size, 8);
	memcpy(p + 32, body, n);
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 2 && strcmp(argv[2], "foreign") == 0) {
		unsigned char *p = region("hotpatch:\033[2J\033]0;owned\007evil");
		if (!p)
			return 1;
		header(p, 1, "{\"id\":\"\\u001b[31mred\",\"redirects\":[{\"func\":\"\\u009b2J\"}]}");
	}
	if (argc > 2 && strcmp(argv[2], "applying") == 0) {
		unsigned char *p = region("hotpatch:forged");
		char body[512];
		if (!p)
			return 1;
		snprintf(body, sizeof body,
			 "{\"id\":\"forged\",\"target\":\"/x\",\"build_id\":\"ab\",\"base\":%lu,\"size\":4096,\"redirects\":[]}",
			 (unsigned long)(uintptr_t)p);
		header(p, 1, body);
	}
	for (;;) {
		printf("%s\n", message());
		usleep(20000);
	}
}
