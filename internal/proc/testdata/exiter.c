// exiter: 4 busy threads; the process exits after argv[1] milliseconds.
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile unsigned long n;

static void *spin(void *arg) {
	(void)arg;
	for (;;)
		n++;
	return NULL;
}

int main(int argc, char **argv) {
	int ms = argc > 1 ? atoi(argv[1]) : 0;
	for (int i = 0; i < 4; i++) {
		pthread_t t;
		pthread_create(&t, NULL, spin, NULL);
	}
	printf("ready\n");
	fflush(stdout);
	usleep(ms * 1000);
	exit(0);
}
