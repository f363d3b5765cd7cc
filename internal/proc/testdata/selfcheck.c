// selfcheck: threads that verify their own registers (rbx, r12-r15 and
// ymm0-15), signal mask and errno around every system call or busy loop,
// for the tests that kill a tracer while a thread is lent to injected code.
//   role 0: busy loop in user code (no system call)
//   role 1: nanosleep(20 ms)        (resumes through restart_syscall)
//   role 2: read(0) of a line       (ERESTARTSYS)
//   role 3: FUTEX_WAIT              (ERESTARTSYS); main wakes it every 20 ms
// prints "counters ADDR", "calls ADDR", "bump ADDR", "eintr ADDR",
// "tids T0 T1 T2 T3", then "ready". A failed check prints "BAD ..." on stderr
// and exits 3.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long counters[4], calls, eintr[4];
static volatile int tids[4];
static int fword;

// bump is called by the test through an injected function call.
__attribute__((noinline)) void bump(long n) { __atomic_add_fetch(&calls, n, __ATOMIC_SEQ_CST); }

struct state {
	unsigned char in[16][32], out[16][32];
	unsigned long gin[5], gout[5];
} __attribute__((aligned(32)));

static void bad(int role, const char *what, long a, long b) {
	fprintf(stderr, "BAD role=%d %s %#lx %#lx\n", role, what, a, b);
	fflush(stderr);
	_exit(3);
}

// checked runs system call nr (or, if spin > 0, a busy loop of spin
// iterations) with ymm0-15, rbx and r12-r15 holding known values, and checks
// them afterwards.
static long checked(int role, unsigned long seq, long nr, long a1, long a2, long a3, long spin) {
	static __thread struct state st;
	for (int i = 0; i < 16; i++)
		for (int j = 0; j < 32; j++)
			st.in[i][j] = (unsigned char)(role * 61 + i * 17 + j * 3 + seq);
	for (int i = 0; i < 5; i++)
		st.gin[i] = 0x1111111111111111UL * (i + 1) ^ (seq << 8) ^ (unsigned long)role;
	long ret = nr;
	register long r10 asm("r10") = 0;
	register long s asm("r8") = spin;
	struct state *p = &st;
	asm volatile(
		"vmovdqu 0*32(%[p]), %%ymm0\n\t"
		"vmovdqu 1*32(%[p]), %%ymm1\n\t"
		"vmovdqu 2*32(%[p]), %%ymm2\n\t"
		"vmovdqu 3*32(%[p]), %%ymm3\n\t"
		"vmovdqu 4*32(%[p]), %%ymm4\n\t"
		"vmovdqu 5*32(%[p]), %%ymm5\n\t"
		"vmovdqu 6*32(%[p]), %%ymm6\n\t"
		"vmovdqu 7*32(%[p]), %%ymm7\n\t"
		"vmovdqu 8*32(%[p]), %%ymm8\n\t"
		"vmovdqu 9*32(%[p]), %%ymm9\n\t"
		"vmovdqu 10*32(%[p]), %%ymm10\n\t"
		"vmovdqu 11*32(%[p]), %%ymm11\n\t"
		"vmovdqu 12*32(%[p]), %%ymm12\n\t"
		"vmovdqu 13*32(%[p]), %%ymm13\n\t"
		"vmovdqu 14*32(%[p]), %%ymm14\n\t"
		"vmovdqu 15*32(%[p]), %%ymm15\n\t"
		"movq 1024(%[p]), %%rbx\n\t"
		"movq 1032(%[p]), %%r12\n\t"
		"movq 1040(%[p]), %%r13\n\t"
		"movq 1048(%[p]), %%r14\n\t"
		"movq 1056(%[p]), %%r15\n\t"
		"test %[s], %[s]\n\t"
		"jz 2f\n\t"
		"1: dec %[s]\n\t"
		"jnz 1b\n\t"
		"jmp 3f\n\t"
		"2: syscall\n\t"
		"3:\n\t"
		"vmovdqu %%ymm0, 512+0*32(%[p])\n\t"
		"vmovdqu %%ymm1, 512+1*32(%[p])\n\t"
		"vmovdqu %%ymm2, 512+2*32(%[p])\n\t"
		"vmovdqu %%ymm3, 512+3*32(%[p])\n\t"
		"vmovdqu %%ymm4, 512+4*32(%[p])\n\t"
		"vmovdqu %%ymm5, 512+5*32(%[p])\n\t"
		"vmovdqu %%ymm6, 512+6*32(%[p])\n\t"
		"vmovdqu %%ymm7, 512+7*32(%[p])\n\t"
		"vmovdqu %%ymm8, 512+8*32(%[p])\n\t"
		"vmovdqu %%ymm9, 512+9*32(%[p])\n\t"
		"vmovdqu %%ymm10, 512+10*32(%[p])\n\t"
		"vmovdqu %%ymm11, 512+11*32(%[p])\n\t"
		"vmovdqu %%ymm12, 512+12*32(%[p])\n\t"
		"vmovdqu %%ymm13, 512+13*32(%[p])\n\t"
		"vmovdqu %%ymm14, 512+14*32(%[p])\n\t"
		"vmovdqu %%ymm15, 512+15*32(%[p])\n\t"
		"movq %%rbx, 1064(%[p])\n\t"
		"movq %%r12, 1072(%[p])\n\t"
		"movq %%r13, 1080(%[p])\n\t"
		"movq %%r14, 1088(%[p])\n\t"
		"movq %%r15, 1096(%[p])\n\t"
		: "+a"(ret), [s] "+r"(s)
		: "D"(a1), "S"(a2), "d"(a3), "r"(r10), [p] "r"(p)
		: "rcx", "r11", "rbx", "r12", "r13", "r14", "r15", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4",
		  "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
	for (int i = 0; i < 16; i++)
		if (memcmp(st.in[i], st.out[i], 32) != 0)
			bad(role, "ymm", i, seq);
	for (int i = 0; i < 5; i++)
		if (st.gin[i] != st.gout[i])
			bad(role, "gpr", st.gin[i], st.gout[i]);
	return ret;
}

static void *worker(void *arg) {
	int role = (int)(long)arg;
	tids[role] = (int)syscall(SYS_gettid);
	sigset_t want, got;
	sigemptyset(&want);
	sigaddset(&want, SIGUSR1);
	sigaddset(&want, SIGRTMIN + role);
	pthread_sigmask(SIG_SETMASK, &want, NULL);
	errno = 1000 + role;
	char buf[64];
	for (unsigned long seq = 1;; seq++) {
		long r;
		struct timespec ts = {0, 20 * 1000 * 1000};
		switch (role) {
		case 0:
			checked(role, seq, 0, 0, 0, 0, 2000000);
			break;
		case 1:
			r = checked(role, seq, SYS_nanosleep, (long)&ts, 0, 0, 0);
			if (r == -EINTR)
				eintr[role]++;
			else if (r != 0)
				bad(role, "nanosleep", r, seq);
			break;
		case 2:
			r = checked(role, seq, SYS_read, 0, (long)buf, sizeof buf, 0);
			if (r <= 0)
				bad(role, "read", r, seq);
			break;
		case 3: {
			int seen = __atomic_load_n(&fword, __ATOMIC_SEQ_CST);
			r = checked(role, seq, SYS_futex, (long)&fword, FUTEX_WAIT_PRIVATE, seen, 0);
			if (r != 0 && r != -EAGAIN)
				bad(role, "futex", r, seq);
			break;
		}
		}
		pthread_sigmask(SIG_SETMASK, NULL, &got);
		for (int s = 1; s < 64; s++)
			if (sigismember(&got, s) != sigismember(&want, s))
				bad(role, "sigmask", s, seq);
		if (errno != 1000 + role)
			bad(role, "errno", errno, seq);
		__atomic_add_fetch(&counters[role], 1, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

int main(void) {
	pthread_t t[4];
	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, worker, (void *)i);
	while (!tids[0] || !tids[1] || !tids[2] || !tids[3])
		usleep(1000);
	printf("counters %p\ncalls %p\nbump %p\neintr %p\n", (void *)counters, (void *)&calls, (void *)bump, (void *)eintr);
	printf("tids %d %d %d %d\nready\n", tids[0], tids[1], tids[2], tids[3]);
	fflush(stdout);
	for (;;) {
		usleep(20000);
		__atomic_add_fetch(&fword, 1, __ATOMIC_SEQ_CST);
		syscall(SYS_futex, &fword, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	}
}
