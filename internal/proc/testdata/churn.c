// churn: one long-lived worker counts (counters[0]); one long-lived thread
// creates detached threads without pause, each living from microseconds to
// a few milliseconds (counters[1] counts them); a "victim" thread spins
// until *victimexit is set, then exits. With the argument "zombie" the main
// thread calls pthread_exit once everything runs (a zombie leader), else it
// counts too (counters[2]).
// Prints "counters ADDR", "victimexit ADDR", "victim TID", "ready".
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long counters[3];
volatile int victimexit;
static volatile int victimtid;

static void *child(void *arg) {
	long n = (long)arg;
	__atomic_add_fetch(&counters[1], 1, __ATOMIC_RELAXED);
	if (n % 3 == 1) {
		struct timespec ts = {0, (n % 50) * 1000};
		nanosleep(&ts, NULL);
	} else if (n % 3 == 2) {
		struct timespec ts = {0, (n % 3 + 1) * 1000000};
		nanosleep(&ts, NULL);
	}
	return NULL;
}

static void *spawner(void *arg) {
	(void)arg;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 64 << 10);
	for (long n = 0;; n++) {
		pthread_t t;
		if (pthread_create(&t, &at, child, (void *)n) != 0) {
			struct timespec ts = {0, 100000};
			nanosleep(&ts, NULL); // too many alive: let some end
		}
	}
	return NULL;
}

static void *worker(void *arg) {
	(void)arg;
	for (;;) {
		counters[0]++;
		if ((counters[0] & 0xffff) == 0)
			usleep(100);
	}
	return NULL;
}

static void *victim(void *arg) {
	(void)arg;
	victimtid = syscall(SYS_gettid);
	while (!victimexit)
		;
	return NULL;
}

int main(int argc, char **argv) {
	pthread_t t;
	pthread_create(&t, NULL, worker, NULL);
	pthread_create(&t, NULL, victim, NULL);
	while (!victimtid)
		usleep(100);
	pthread_create(&t, NULL, spawner, NULL);
	printf("counters %p\n", (void *)counters);
	printf("victimexit %p\n", (void *)&victimexit);
	printf("victim %d\n", victimtid);
	printf("ready\n");
	fflush(stdout);
	if (argc > 1 && strcmp(argv[1], "zombie") == 0)
		pthread_exit(NULL);
	for (;;) {
		counters[2]++;
		if ((counters[2] & 0xffff) == 0)
			usleep(100);
	}
}
