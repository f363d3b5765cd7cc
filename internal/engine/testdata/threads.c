/* 16 threads call compute() in a tight loop; every result must be the old
 * (x*2) or the new (x*3) function's value. Any other value is reported and the
 * process exits 3. The main thread prints the counts of each every 50 ms. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdatomic.h>

#define NTHREADS 16
__attribute__((noinline)) long compute(long x) { return x * 2; }
static atomic_long olds, news;

static void *worker(void *arg) {
	long seed = (long)arg;
	for (long i = seed;; i++) {
		long x = (i & 0xffff) + 1;
		long r = compute(x);
		if (r == x * 2) atomic_fetch_add(&olds, 1);
		else if (r == x * 3) atomic_fetch_add(&news, 1);
		else { fprintf(stderr, "WRONG compute(%ld) = %ld\n", x, r); exit(3); }
	}
	return NULL;
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pthread_t t[NTHREADS];
	for (long i = 0; i < NTHREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(i * 1000));
	for (;;) {
		printf("old %ld new %ld\n", atomic_load(&olds), atomic_load(&news));
		usleep(50000);
	}
}
