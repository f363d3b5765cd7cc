/* churn: the main thread calls compute() in a loop and checks every result
 * is the old (x*2) or the new (x*3) function's value; one long-lived thread
 * creates detached threads without pause, each living from microseconds to
 * a few milliseconds (some call compute() too). Prints "old N new M spawned S"
 * every 20 ms. A wrong result is reported and the process exits 3. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long compute(long x) { return x * 2; }
static atomic_long olds, news, spawned;

static void check(long x) {
	long r = compute(x);
	if (r == x * 2) atomic_fetch_add(&olds, 1);
	else if (r == x * 3) atomic_fetch_add(&news, 1);
	else { fprintf(stderr, "WRONG compute(%ld) = %ld\n", x, r); exit(3); }
}

static void *child(void *arg) {
	long n = (long)arg;
	atomic_fetch_add(&spawned, 1);
	switch (n % 4) {
	case 0: break;                       /* exits at once */
	case 1: for (long i = 0; i < 1000; i++) check(i + 1); break;
	case 2: { struct timespec ts = {0, (n % 50) * 1000}; nanosleep(&ts, NULL); break; }
	case 3: { struct timespec ts = {0, (n % 3 + 1) * 1000000}; nanosleep(&ts, NULL); check(n); break; }
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
			nanosleep(&ts, NULL); /* too many threads alive: let some end */
		}
	}
	return NULL;
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t s;
	pthread_create(&s, NULL, spawner, NULL);
	struct timespec last;
	clock_gettime(CLOCK_MONOTONIC, &last);
	for (long i = 0;; i++) {
		check((i & 0xffff) + 1);
		if ((i & 0xfff) == 0) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if ((now.tv_sec - last.tv_sec) * 1000000000L + now.tv_nsec - last.tv_nsec > 20000000L) {
				printf("old %ld new %ld spawned %ld\n", atomic_load(&olds), atomic_load(&news), atomic_load(&spawned));
				last = now;
			}
		}
	}
}
