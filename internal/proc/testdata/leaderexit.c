// leaderexit: the main thread starts two workers and calls pthread_exit, so
// the thread group leader is a zombie while the process lives on.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

volatile unsigned long counters[2];

static void *worker(void *arg) {
	long i = (long)arg;
	for (;;) {
		counters[i]++;
		if ((counters[i] & 0xffff) == 0)
			usleep(200);
	}
	return NULL;
}

int main(void) {
	for (long i = 0; i < 2; i++) {
		pthread_t t;
		pthread_create(&t, NULL, worker, (void *)i);
	}
	printf("counters %p\n", (void *)counters);
	printf("ready\n");
	fflush(stdout);
	pthread_exit(NULL);
}
