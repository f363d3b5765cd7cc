/* A worker thread sits inside busy() (sleeping in it) for argv[1] seconds,
 * then prints "left" and loops calling it briefly. The main thread prints
 * compute-style lines "x busy(x)". */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) long busy(long x, long secs) {
	if (secs) sleep(secs);
	return x * 2;
}

static long hold;
static void *worker(void *a) {
	busy(1, hold);
	printf("left\n");
	return NULL;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	hold = argc > 1 ? atol(argv[1]) : 2;
	pthread_t t;
	pthread_create(&t, NULL, worker, NULL);
	usleep(50000);
	printf("ready\n");
	for (long i = 1;; i++) {
		printf("%ld %ld\n", i, busy(i, 0));
		usleep(20000);
	}
}
