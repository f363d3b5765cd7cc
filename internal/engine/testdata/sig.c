/* Linked into a test target: a thread that gets SIGUSR1 spends 1.5 s in its
 * handler. */
#include <signal.h>
#include <time.h>

static void on_usr1(int sig) {
	(void)sig;
	struct timespec ts = {1, 500000000};
	nanosleep(&ts, NULL);
}

__attribute__((constructor)) static void install(void) { signal(SIGUSR1, on_usr1); }
