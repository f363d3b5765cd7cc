/* Runs start() (testdata/diff/tls, in the executable or a library). */
#include <unistd.h>

void start(void);

int main(void) {
	start();
	for (;;)
		pause();
}
