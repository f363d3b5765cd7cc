// seccomped: worker threads counting, then a seccomp filter like systemd's
// hardening, installed after the threads started.
// usage: seccomped POLICY SCOPE
//   POLICY: kill-memfd | errno-memfd | trap-memfd | notif-memfd | mdwe | trap-mdwe | errno-sigreturn | allow
//   SCOPE:  tsync (every thread, seccomp(2) with SECCOMP_FILTER_FLAG_TSYNC) | main (the main thread only)
//           | late (tsync, by another thread, once a line is read from stdin; then prints "installed")
// prints "counters 0xADDR", "sigsys 0xADDR" (SIGSYS deliveries), "ready".
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

volatile unsigned long counters[4];
volatile unsigned long sigsys;

static void on_sigsys(int sig) { (void)sig; sigsys++; }

static void *worker(void *arg) {
	long i = (long)arg;
	for (;;) {
		counters[i]++;
		if ((counters[i] & 0xffff) == 0)
			usleep(200);
	}
	return NULL;
}

#define LD(off) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (off))
#define RET(v) BPF_STMT(BPF_RET | BPF_K, (v))
#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))

static int install(const char *policy, const char *scope);

static const char *late_policy;

static void *late_installer(void *arg) {
	(void)arg;
	char line[16];
	if (!fgets(line, sizeof line, stdin))
		return NULL;
	if (install(late_policy, "tsync") != 0)
		exit(1);
	// write(2), not stdio: the test stops the main thread at any instant,
	// possibly inside fflush(stdout) holding the stream's lock.
	static const char msg[] = "installed\n";
	if (write(1, msg, sizeof msg - 1) < 0)
		exit(1);
	return NULL;
}

int main(int argc, char **argv) {
	const char *policy = argc > 1 ? argv[1] : "allow";
	const char *scope = argc > 2 ? argv[2] : "tsync";
	signal(SIGSYS, on_sigsys);
	for (long i = 0; i < 4; i++) {
		pthread_t t;
		pthread_create(&t, NULL, worker, (void *)i);
	}
	if (strcmp(scope, "late") == 0) {
		late_policy = policy;
		pthread_t t;
		pthread_create(&t, NULL, late_installer, NULL);
	} else if (install(policy, scope) != 0) {
		return 1;
	}
	printf("counters %p\n", (void *)counters);
	printf("sigsys %p\n", (void *)&sigsys);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}

static int install(const char *policy, const char *scope) {
	unsigned deny = SECCOMP_RET_KILL_PROCESS;
	if (strncmp(policy, "errno", 5) == 0)
		deny = SECCOMP_RET_ERRNO | EPERM;
	if (strncmp(policy, "trap", 4) == 0)
		deny = SECCOMP_RET_TRAP;
	if (strncmp(policy, "notif", 5) == 0)
		deny = SECCOMP_RET_USER_NOTIF;
	int mdwe = strstr(policy, "mdwe") != NULL, memfd = strstr(policy, "memfd") != NULL;
	int sigret = strstr(policy, "sigreturn") != NULL;
	struct sock_filter f[] = {
		LD(offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		RET(SECCOMP_RET_KILL_PROCESS),
		LD(offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, memfd ? __NR_memfd_create : sigret ? __NR_rt_sigreturn : 0xffff, 0, 1),
		RET(deny),
		// MemoryDenyWriteExecute=: mprotect/pkey_mprotect adding PROT_EXEC,
		// mmap writable and executable.
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mdwe ? __NR_mprotect : 0xffff, 1, 0),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mdwe ? __NR_pkey_mprotect : 0xffff, 0, 3),
		LD(ARG_LO(2)),
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, PROT_EXEC, 0, 1),
		RET(deny),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, mdwe ? __NR_mmap : 0xffff, 0, 4),
		LD(ARG_LO(2)),
		BPF_STMT(BPF_ALU | BPF_AND | BPF_K, PROT_WRITE | PROT_EXEC),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROT_WRITE | PROT_EXEC, 0, 1),
		RET(deny),
		RET(SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		perror("PR_SET_NO_NEW_PRIVS");
		return 1;
	}
	unsigned long flags = strcmp(scope, "tsync") == 0 ? SECCOMP_FILTER_FLAG_TSYNC : 0;
	if (deny == SECCOMP_RET_USER_NOTIF)
		flags = SECCOMP_FILTER_FLAG_NEW_LISTENER; // nobody answers: a notified call would hang
	if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog) < 0) {
		perror("seccomp");
		return 1;
	}
	return 0;
}
