/* A thread is inside compute, in a function that moved its stack pointer
 * to an address in no mapping and spins there: its stack cannot be read, so
 * the stack model cannot tell whether compute is active on it (it is). The
 * main thread prints "inside" once the other one is there, then calls
 * compute itself and prints "x compute(x)" pairs. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static volatile int inside;

__attribute__((noinline)) void wild(void) {
	inside = 1;
	__asm__ volatile("mov $0x10000, %%rsp\n1: pause\n jmp 1b" ::: "memory");
}

__attribute__((noinline)) long compute(long x) {
	if (x < 0)
		wild();
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
