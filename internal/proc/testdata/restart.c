// restart: every thread blocked in a restartable system call.
//   sleeper: nanosleep(2 s), measures the elapsed time with CLOCK_MONOTONIC
//   reader:  read(0) on a pipe the test writes to
//   waiter:  FUTEX_WAIT until the reader has its data
//   main:    pthread_join (futex)
// prints "tids MAIN SLEEPER READER WAITER", then one result line per thread,
// then "done".
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static volatile int tids[4];
static int fword;

static int gettid_(void) { return (int)syscall(SYS_gettid); }

static void *sleeper(void *arg) {
	(void)arg;
	tids[1] = gettid_();
	struct timespec t0, t1, req = {2, 0};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long r = syscall(SYS_nanosleep, &req, NULL);
	int e = r < 0 ? errno : 0;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long long ns = (t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec);
	printf("sleep ret=%ld errno=%d ns=%lld\n", r, e, ns);
	fflush(stdout);
	return NULL;
}

static void *reader(void *arg) {
	(void)arg;
	tids[2] = gettid_();
	char buf[64];
	long r = syscall(SYS_read, 0, buf, sizeof buf - 1);
	int e = r < 0 ? errno : 0;
	buf[r > 0 ? r : 0] = 0;
	buf[strcspn(buf, "\n")] = 0;
	printf("read ret=%ld errno=%d data=%s\n", r, e, buf);
	fflush(stdout);
	__atomic_store_n(&fword, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &fword, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	return NULL;
}

static void *waiter(void *arg) {
	(void)arg;
	tids[3] = gettid_();
	long bad = 0, calls = 0;
	while (__atomic_load_n(&fword, __ATOMIC_SEQ_CST) == 0) {
		long r = syscall(SYS_futex, &fword, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		calls++;
		if (r < 0 && errno != EAGAIN && bad == 0)
			bad = errno;
	}
	printf("futex bad=%ld calls=%ld\n", bad, calls);
	fflush(stdout);
	return NULL;
}

int main(void) {
	pthread_t t[3];
	tids[0] = gettid_();
	pthread_create(&t[0], NULL, sleeper, NULL);
	pthread_create(&t[1], NULL, reader, NULL);
	pthread_create(&t[2], NULL, waiter, NULL);
	while (!tids[1] || !tids[2] || !tids[3])
		usleep(1000);
	printf("tids %d %d %d %d\n", tids[0], tids[1], tids[2], tids[3]);
	fflush(stdout);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	printf("done\n");
	fflush(stdout);
	return 0;
}
