/* Threads blocked in nanosleep, read and a futex (condition variable) while
 * hotpatch injects system calls. Each reports what it observed:
 *   sleep <ms> <rc>      a 2 s nanosleep: elapsed ms and return value
 *   read <n> <data>      a read on a pipe: bytes and data
 *   cond <rc>            pthread_cond_wait woken by the main thread
 * The main thread prints "ready" once all three are blocked, then waits for a
 * line on stdin; it then writes to the pipe and signals the condition. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long compute(long x) { return x * 2; }

static int fds[2];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;

static double now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *sleeper(void *a) {
	struct timespec ts = {2, 0};
	double t0 = now_ms();
	int rc = nanosleep(&ts, NULL);
	printf("sleep %.0f %d %d\n", now_ms() - t0, rc, rc ? errno : 0);
	return NULL;
}

static void *reader(void *a) {
	char buf[64] = {0};
	ssize_t n = read(fds[0], buf, sizeof buf - 1);
	printf("read %zd %s %d\n", n, n > 0 ? buf : "-", n < 0 ? errno : 0);
	return NULL;
}

static void *waiter(void *a) {
	pthread_mutex_lock(&mu);
	int rc = 0;
	while (!go && rc == 0) rc = pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	printf("cond %d\n", rc);
	return NULL;
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pipe(fds);
	pthread_t t[3];
	pthread_create(&t[0], NULL, sleeper, NULL);
	pthread_create(&t[1], NULL, reader, NULL);
	pthread_create(&t[2], NULL, waiter, NULL);
	usleep(100000);
	printf("ready %ld\n", compute(21));
	char line[16];
	if (!fgets(line, sizeof line, stdin)) return 1;
	write(fds[1], "hello", 5);
	pthread_mutex_lock(&mu);
	go = 1;
	pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
	for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
	printf("done %ld\n", compute(21));
	return 0;
}
