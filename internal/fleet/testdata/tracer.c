/* Holds another process traced: PTRACE_SEIZE (ptrace(2), Linux 3.4) attaches
 * without stopping it, so the tracee keeps running but no other tracer, such
 * as hotpatch, can attach. Prints "seized" and waits to be killed; the kernel
 * detaches the tracee when the tracer exits. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <unistd.h>

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return 2;
	if (ptrace(PTRACE_SEIZE, atoi(argv[1]), 0, 0) != 0) {
		perror("PTRACE_SEIZE");
		return 1;
	}
	printf("seized\n");
	for (;;)
		pause();
}
