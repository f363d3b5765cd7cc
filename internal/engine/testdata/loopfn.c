/* loopfn(n) is hand-written so that a loop starts at entry+2: the 5-byte
 * jump cannot go at the entry (a branch lands inside it), a 2-byte jump to a
 * slot in the padding can. It returns n (n >= 1); the patch returns n + 1000.
 * argv[1] threads call it with n = 1..8; any other result exits 3. The main
 * thread prints "old N new M" every 20 ms. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* argv[2]: microseconds each thread sleeps after every 1000 calls (0: spin),
 * so that many threads can hammer without saturating the machine. */
static long pause_us;

int loopfn(int n);
__asm__(".text\n"
	".p2align 4\n"
	".globl loopfn\n"
	".type loopfn, @function\n"
	"loopfn:\n"
	"	xorl %eax, %eax\n" /* 31 c0: offset 0 */
	"1:	addl $1, %eax\n"   /* 83 c0 01: offset 2, the loop's target */
	"	cmpl %edi, %eax\n" /* 39 f8 */
	"	jl 1b\n"           /* 7c f9 */
	"	ret\n"
	".size loopfn, .-loopfn\n"
	".p2align 4\n");

#define MAXT 64
static struct {
	volatile long olds, news;
	char pad[48];
} cnt[MAXT];

static void *worker(void *arg) {
	long k = (long)arg;
	for (int i = 0;; i++) {
		int n = (i & 7) + 1;
		int r = loopfn(n);
		if (r == n)
			cnt[k].olds++;
		else if (r == n + 1000)
			cnt[k].news++;
		else {
			fprintf(stderr, "WRONG loopfn(%d) = %d\n", n, r);
			exit(3);
		}
		if (pause_us && i % 1000 == 0) usleep(pause_us);
	}
	return NULL;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	long n = argc > 1 ? atol(argv[1]) : 16;
	if (n < 1 || n > MAXT) n = 16;
	pause_us = argc > 2 ? atol(argv[2]) : 0;
	pthread_t t;
	for (long i = 0; i < n; i++) pthread_create(&t, NULL, worker, (void *)i);
	for (;;) {
		long o = 0, w = 0;
		for (long i = 0; i < n; i++) o += cnt[i].olds, w += cnt[i].news;
		printf("old %ld new %ld\n", o, w);
		usleep(20000);
	}
}
