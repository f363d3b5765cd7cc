/* impl() has a second name, alias_fn, at the same address (an alias, as
 * glibc and many libraries export one function under two names). Threads
 * call it through both names and check every result is old or new. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) long impl(long x) { return x + 1; }
extern long alias_fn(long x) __attribute__((alias("impl")));

static void *worker(void *arg) {
	for (long x = (long)arg;; x = (x + 1) & 0xffff) {
		long a = impl(x), b = alias_fn(x);
		if ((a != x + 1 && a != x + 1001) || (b != x + 1 && b != x + 1001)) {
			fprintf(stderr, "WRONG x=%ld impl=%ld alias=%ld\n", x, a, b);
			exit(3);
		}
	}
	return NULL;
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t;
	for (long i = 0; i < 4; i++) pthread_create(&t, NULL, worker, (void *)(i * 1000));
	for (;;) {
		printf("%ld %ld\n", impl(0), alias_fn(0));
		usleep(10000);
	}
}
