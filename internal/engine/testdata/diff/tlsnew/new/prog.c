/* A fix that adds a thread-local variable: refused at build. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

__thread long tv = 7;
static __thread long tz;
extern __thread long te; /* defined in the executable (tls_main.c) */
__thread long tnew;

__attribute__((noinline)) long bump(long id) {
	tv += id;
	tz += 1;
	te += 2;
	tnew++;
	return 2;
}

static void *worker(void *arg) {
	long id = (long)arg;
	for (;;) {
		long v = bump(id);
		printf("%ld %ld %ld %ld %ld\n", id, v, tv, tz, te);
		usleep(5000);
	}
	return NULL;
}

void start(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (long id = 1; id <= 3; id++) {
		pthread_t th;
		pthread_create(&th, NULL, worker, (void *)id);
	}
}
