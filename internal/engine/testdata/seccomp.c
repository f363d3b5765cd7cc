/* 8 threads call compute() (old x*2, new x*3: basic_new.c) and check every
 * result; then a seccomp filter like systemd's hardening is installed on
 * every thread (seccomp(2), SECCOMP_FILTER_FLAG_TSYNC). The main thread prints
 * "old N new M sigsys S" every 20 ms.
 * usage: seccomp POLICY [single]
 * With "single" there are no worker threads: the main thread calls compute()
 * between its prints (a process of one thread: one stop, engine.oneStop).
 *   kill-memfd   memfd_create kills the process (SystemCallFilter=~memfd_create)
 *   errno-memfd  memfd_create fails with EPERM
 *   trap-memfd   memfd_create raises SIGSYS
 *   mdwe         MemoryDenyWriteExecute=: mprotect/pkey_mprotect with PROT_EXEC
 *                and mmap with PROT_WRITE|PROT_EXEC kill the process
 *   trap-mdwe    the same with SIGSYS
 *   kill-munmap  munmap kills the process (the region can never be freed)
 * A SIGSYS handler counts deliveries. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define NTHREADS 8
__attribute__((noinline)) long compute(long x) { return x * 2; }
static atomic_long olds, news, sigsys;

static void on_sigsys(int sig) { (void)sig; atomic_fetch_add(&sigsys, 1); }

static void step(long i) {
	long x = (i & 0xffff) + 1;
	long r = compute(x);
	if (r == x * 2) atomic_fetch_add(&olds, 1);
	else if (r == x * 3) atomic_fetch_add(&news, 1);
	else { fprintf(stderr, "WRONG compute(%ld) = %ld\n", x, r); exit(3); }
}

static void *worker(void *arg) {
	for (long i = (long)arg;; i++) {
		step(i);
		if ((i & 0xfff) == 0) usleep(100);
	}
	return NULL;
}

#define LD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define IF_NR(nr, skip_if_not) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, (skip_if_not))

int main(int argc, char **argv) {
	const char *policy = argc > 1 ? argv[1] : "none";
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGSYS, on_sigsys);
	int single = argc > 2 && strcmp(argv[2], "single") == 0;
	pthread_t t;
	for (long i = 0; i < NTHREADS && !single; i++) pthread_create(&t, NULL, worker, (void *)(i * 1000));
	unsigned deny = strncmp(policy, "errno", 5) == 0 ? SECCOMP_RET_ERRNO | EPERM
		      : strncmp(policy, "trap", 4) == 0   ? SECCOMP_RET_TRAP
							  : SECCOMP_RET_KILL_PROCESS;
	int memfd = strstr(policy, "memfd") != NULL, mdwe = strstr(policy, "mdwe") != NULL;
	int munmap_ = strstr(policy, "munmap") != NULL;
	struct sock_filter f[] = {
		LD(offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		RET(SECCOMP_RET_KILL_PROCESS),
		LD(offsetof(struct seccomp_data, nr)),
		IF_NR(memfd ? __NR_memfd_create : 0xffff, 1),
		RET(deny),
		IF_NR(munmap_ ? __NR_munmap : 0xffff, 1),
		RET(deny),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mdwe ? __NR_mprotect : 0xffff, 1, 0),
		IF_NR(mdwe ? __NR_pkey_mprotect : 0xffff, 3),
		LD(offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
		RET(deny),
		IF_NR(mdwe ? __NR_mmap : 0xffff, 4),
		LD(offsetof(struct seccomp_data, args[2])),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, PROT_WRITE | PROT_EXEC),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_WRITE | PROT_EXEC, 0, 1),
		RET(deny),
		RET(SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
	if (strcmp(policy, "none") != 0) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
		    syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) {
			perror("seccomp");
			return 1;
		}
	}
	for (long i = 0;; i++) {
		for (long k = 0; single && k < 1000; k++) step(i * 1000 + k);
		printf("old %ld new %ld sigsys %ld\n", atomic_load(&olds), atomic_load(&news), atomic_load(&sigsys));
		usleep(20000);
	}
}
