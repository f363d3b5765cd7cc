/* Test host: maps a region (near the address given in argv[1]), tells the test
 * where it and the symbols a patch needs are, reads a linked image from stdin,
 * maps it with the requested protections and calls its entry point twice. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int counter = 5;
__thread int tlsvar = 7;

#define REGION (16ul << 20)

static uint64_t rd(void)
{
	uint64_t v;
	if (fread(&v, sizeof v, 1, stdin) != 1) {
		fprintf(stderr, "short read\n");
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	void *hint = (void *)strtoul(argv[1], NULL, 0);
	char *r = mmap(hint, REGION, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (r == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	uintptr_t tp;
	__asm__("mov %%fs:0, %0" : "=r"(tp)); /* the TCB's self pointer = thread pointer */
	printf("%lx %lx %lx %lx %ld\n", (unsigned long)r, (unsigned long)(uintptr_t)snprintf,
	       (unsigned long)(uintptr_t)strlen, (unsigned long)(uintptr_t)&counter,
	       (long)((uintptr_t)&tlsvar - tp));
	fflush(stdout);

	uint64_t entry = rd(), nseg = rd();
	for (uint64_t i = 0; i < nseg; i++) {
		uint64_t off = rd(), prot = rd(), len = rd();
		if (off + len > REGION) {
			fprintf(stderr, "segment too big\n");
			return 2;
		}
		size_t span = (len + 4095) & ~4095ul;
		if (mprotect(r + off, span, PROT_READ | PROT_WRITE) != 0 ||
		    fread(r + off, 1, len, stdin) != len || mprotect(r + off, span, (int)prot) != 0) {
			perror("segment");
			return 2;
		}
	}
	int (*fn)(char *, int) = (int (*)(char *, int))(uintptr_t)entry;
	char buf[128] = "abc";
	for (int i = 0; i < 2; i++) {
		int n = fn(buf, sizeof buf);
		printf("%d [%s] counter=%d tlsvar=%d\n", n, buf, counter, tlsvar);
	}
	return 0;
}
