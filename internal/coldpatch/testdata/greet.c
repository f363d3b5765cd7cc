/* A program built twice for the coldpatch tests: the original prints
 * "greet v1", the fixed build (-DFIXED) prints "greet v2". */
#include <stdio.h>

#ifdef FIXED
#define VERSION "v2"
#else
#define VERSION "v1"
#endif

__attribute__((noinline)) void greet(void) { printf("greet %s\n", VERSION); }

int main(void) {
	greet();
	return 0;
}
