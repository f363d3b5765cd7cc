/* Prints "i greet(i)" every 10 ms with write(2): no stdio stream symbol. */
#include <stdio.h>
#include <unistd.h>

long greet(long i);

int main(void) {
	char buf[64];
	for (long i = 1;; i++) {
		int n = snprintf(buf, sizeof buf, "%ld %ld\n", i, greet(i));
		if (write(1, buf, n) != n)
			return 1;
		usleep(10000);
	}
}
