/* Three threads, each with its own thread-local tv (initialised, .tdata), tz
 * (zero, .tbss) and te (another file's, reached through the GOT: initial-exec
 * in an executable, which the static linker relaxes to local-exec). bump()
 * changes them; worker() (never changed) prints "id version tv tz te" after
 * each call, so the test sees both the value the code returns and the
 * variables as the old code reads them. In every thread tv == 7 + id*tz and
 * te == 2*tz: threads sharing a variable, or new code writing another copy,
 * would break it or stop tz from growing. */
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

__thread long tv = 7;
static __thread long tz;
extern __thread long te; /* defined in the executable (tls_main.c) */

__attribute__((noinline)) long bump(long id) {
	tv += id;
	tz += 1;
	te += 2;
	return 1;
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
