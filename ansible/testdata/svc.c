/* Target of the bundle CLI tests. Built as is it says "v1"; built with
 * -DFIXED (the coldpatch) or patched with svc_fix.c (the hotpatch) it says
 * "v2". With an argument it says it every 20 ms until killed. */
#include <stdio.h>
#include <unistd.h>

#ifdef FIXED
#define MSG "v2"
#else
#define MSG "v1"
#endif

__attribute__((noinline)) const char *message(void) { return MSG; }

int main(int argc, char **argv) {
	(void)argv;
	setvbuf(stdout, NULL, _IOLBF, 0);
	do {
		printf("%s\n", message());
		if (argc > 1)
			usleep(20000);
	} while (argc > 1);
	return 0;
}
