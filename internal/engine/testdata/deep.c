/* A thread sleeps forever below compute, 32 KiB of stack deeper than its
 * frame (deep's array): the stack walk must reach past the first kilobytes
 * of the stack it copies (engine/stacks.go) to see compute on it. The main
 * thread prints "inside" once the other one is there, then calls compute
 * itself and prints "x compute(x)" pairs. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile int inside;

__attribute__((noinline)) void deep(void) {
	volatile char big[32 << 10];
	big[0] = 1;
	big[sizeof big - 1] = 1;
	inside = 1;
	for (;;) {
		struct timespec ts = {1, 0};
		nanosleep(&ts, NULL);
	}
}

__attribute__((noinline)) long compute(long x) {
	if (x < 0)
		deep();
	return x * 2;
}

static void *worker(void *a) {
	(void)a;
	compute(-1);
	return NULL;
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t;
	pthread_create(&t, NULL, worker, NULL);
	while (!inside)
		usleep(1000);
	printf("inside\n");
	for (long i = 1;; i++) {
		printf("%ld %ld\n", i, compute(i));
		usleep(10000);
	}
}
