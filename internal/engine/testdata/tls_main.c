/* Runs start() (testdata/diff/tls, in the executable or a library). */
#include <unistd.h>

void start(void);

__thread long te; /* used by testdata/diff/tls through the GOT */

int main(void) {
	start();
	for (;;)
		pause();
}
