#include <unistd.h>
long work(long x) {
	usleep(2000);
	return x + 1001;
}
