// cloner: the main thread repeatedly creates a child *process* sharing its
// memory (clone(CLONE_VM) without CLONE_THREAD) and waits for it.
// prints "done 0xADDR" (count of children that ran), "ready".
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

volatile unsigned long done;
static char stack[64 << 10] __attribute__((aligned(16)));

static int child(void *arg) {
	(void)arg;
	done++;
	return 0;
}

int main(void) {
	printf("done %p\n", (void *)&done);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		int pid = clone(child, stack + sizeof stack, CLONE_VM | SIGCHLD, NULL);
		if (pid < 0) {
			perror("clone");
			return 1;
		}
		int st;
		if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st)) {
			fprintf(stderr, "waitpid: bad status\n");
			return 1;
		}
		usleep(1000);
	}
}
