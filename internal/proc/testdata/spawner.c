// spawner: creates short-lived threads in a loop, forever.
// prints "spawned 0xADDR" (address of the count of finished threads), "ready".
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

volatile unsigned long spawned;

static void *child(void *arg) {
	(void)arg;
	__atomic_add_fetch(&spawned, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *spawner(void *arg) {
	(void)arg;
	for (;;) {
		pthread_t t[4];
		for (int i = 0; i < 4; i++)
			if (pthread_create(&t[i], NULL, child, NULL) != 0)
				t[i] = 0;
		for (int i = 0; i < 4; i++)
			if (t[i])
				pthread_join(t[i], NULL);
	}
	return NULL;
}

int main(void) {
	pthread_t a, b;
	pthread_create(&a, NULL, spawner, NULL);
	pthread_create(&b, NULL, spawner, NULL);
	printf("spawned %p\n", (void *)&spawned);
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		// The main thread spawns detached threads too.
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_create(&t, &at, child, NULL);
		pthread_attr_destroy(&at);
		usleep(100);
	}
}
