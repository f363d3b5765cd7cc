// lockholder: one thread blocked in read(0) inside a dl_iterate_phdr
// callback (it holds the loader lock), one inside malloc's neighbour free()
// is not reproducible, so the main thread just spins in user code.
// prints "holder TID" and "ready".
#define _GNU_SOURCE
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

static volatile int holder_tid;
volatile unsigned long spin;

static int cb(struct dl_phdr_info *info, size_t size, void *data) {
	(void)info, (void)size, (void)data;
	holder_tid = (int)syscall(SYS_gettid);
	char c;
	return read(0, &c, 1) >= 0;
}

static void *holder(void *arg) {
	(void)arg;
	dl_iterate_phdr(cb, NULL);
	return NULL;
}

int main(void) {
	pthread_t t;
	pthread_create(&t, NULL, holder, NULL);
	while (!holder_tid)
		usleep(1000);
	printf("holder %d\nready\n", holder_tid);
	fflush(stdout);
	for (;;)
		spin++;
}
