// threads: N threads incrementing their own counter forever.
// usage: threads NTHREADS
// prints "counters 0xADDR", "never 0xADDR", "ready".
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAXT 256
volatile unsigned long counters[MAXT];
volatile unsigned long usr1;

static void on_usr1(int sig) { (void)sig; usr1++; }

// Never executed: the test overwrites its (read-only) code.
__attribute__((noinline, used)) int never_called(int x) { return x * 7 + 3; }

static void *worker(void *arg) {
	long i = (long)arg;
	for (;;) {
		counters[i]++;
		if ((counters[i] & 0xffff) == 0)
			usleep(200);
	}
	return NULL;
}

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 8;
	signal(SIGUSR1, on_usr1);
	if (n > MAXT)
		n = MAXT;
	for (long i = 0; i < n; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, worker, (void *)i) != 0) {
			perror("pthread_create");
			return 1;
		}
	}
	printf("counters %p\n", (void *)counters);
	printf("never %p\n", (void *)never_called);
	printf("usr1 %p\n", (void *)&usr1);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
