/* argv[1] threads (default 16) call compute() in a tight loop. compute is
 * tiny.c's 4-byte function (lea 0x1(%rdi),%eax; ret), linked last so that
 * nothing but .fini follows it, or the same from libtiny.so. Every result must
 * be the old (x+1) or the new (x+2) value; anything else is reported and the
 * process exits 3. The main thread prints "old N new M" every 20 ms. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* argv[2]: microseconds each thread sleeps after every 1000 calls (0: spin),
 * so that many threads can hammer without saturating the machine. */
static long pause_us;

int compute(int x);

#define MAXT 64
static struct {
	volatile long olds, news;
	char pad[48];
} cnt[MAXT];

static void *worker(void *arg) {
	long k = (long)arg;
	for (int i = (int)k * 1000;; i++) {
		int x = i & 0xffff;
		int r = compute(x);
		if (r == x + 1)
			cnt[k].olds++;
		else if (r == x + 2)
			cnt[k].news++;
		else {
			fprintf(stderr, "WRONG compute(%d) = %d\n", x, r);
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
