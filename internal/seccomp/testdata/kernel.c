// Runs seccomp filters in the kernel for TestAgainstKernel. Reads from stdin
// a list of cases: a filter chain and one system call. For each case it
// forks a child that installs the chain (oldest first) and makes the call on
// a second thread, and prints one line: "einval I" (filter I refused),
// "ret R" (the call returned R), "trap D" (SIGSYS with si_errno D),
// "kill_thread" or "kill_process". The first line is the instruction
// pointer the filters see: the address after the syscall instruction.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

extern char sc_after[];

__attribute__((noinline)) static long rawsys(long nr, const uint64_t *a) {
	long ret;
	register long r10 asm("r10") = a[3];
	register long r8 asm("r8") = a[4];
	register long r9 asm("r9") = a[5];
	asm volatile("syscall\n.globl sc_after\nsc_after:\n"
		     : "=a"(ret)
		     : "a"(nr), "D"(a[0]), "S"(a[1]), "d"(a[2]), "r"(r10), "r"(r8), "r"(r9)
		     : "rcx", "r11", "memory");
	return ret;
}

struct call {
	int32_t nr;
	uint64_t args[6];
};

struct result {
	volatile int done, trapped, trapdata;
	long ret;
};

static struct result *res;
static struct call cur;

static void onsys(int sig, siginfo_t *si, void *uc) {
	res->trapped = 1;
	res->trapdata = si->si_errno;
}

static void *caller(void *arg) {
	res->ret = rawsys(cur.nr, cur.args);
	res->done = 1;
	return NULL;
}

static int readn(void *p, size_t n) { return fread(p, 1, n, stdin) == n; }

int main(void) {
	printf("ip %lu\n", (unsigned long)sc_after);
	fflush(stdout);
	res = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint32_t nfilters;
	while (readn(&nfilters, 4)) {
		struct sock_fprog progs[16];
		for (uint32_t i = 0; i < nfilters; i++) {
			uint32_t len;
			if (!readn(&len, 4)) return 1;
			progs[i].len = len;
			progs[i].filter = malloc(len * sizeof(struct sock_filter) + 1);
			if (!readn(progs[i].filter, len * sizeof(struct sock_filter))) return 1;
		}
		if (!readn(&cur, sizeof cur)) return 1;
		memset(res, 0, sizeof *res);
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			struct rlimit nocore = {0, 0};
			setrlimit(RLIMIT_CORE, &nocore);
			struct sigaction sa = {0};
			sa.sa_sigaction = onsys;
			sa.sa_flags = SA_SIGINFO;
			sigaction(SIGSYS, &sa, NULL);
			prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
			for (uint32_t i = 0; i < nfilters; i++) {
				if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &progs[i]) != 0) {
					printf("einval %u\n", i);
					fflush(stdout);
					_exit(0);
				}
			}
			pthread_t th;
			pthread_create(&th, NULL, caller, NULL);
			pthread_join(th, NULL);
			if (res->trapped)
				printf("trap %d\n", res->trapdata);
			else if (res->done)
				printf("ret %ld\n", res->ret);
			else
				printf("kill_thread\n");
			fflush(stdout);
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
		if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS)
			printf("kill_process\n");
		else if (!WIFEXITED(st))
			printf("other %d\n", st);
		for (uint32_t i = 0; i < nfilters; i++) free(progs[i].filter);
	}
	return 0;
}
