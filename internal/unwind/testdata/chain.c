/* main -> outer -> inner -> nanosleep: a known call chain to unwind. */
#include <stdio.h>
#include <time.h>

__attribute__((noinline)) void inner(void) {
	struct timespec ts = {60, 0};
	printf("ready\n");
	fflush(stdout);
	nanosleep(&ts, NULL);
	__asm__ volatile("" ::: "memory");
}
__attribute__((noinline)) void outer(void) {
	inner();
	__asm__ volatile("" ::: "memory");
}
int main(void) {
	outer();
	return 0;
}
