/* Loads the library given as argv[1] with dlopen only after a line arrives on
 * stdin, then prints "i lib_compute(i)" every 50 ms. */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		return 2;
	printf("waiting\n");
	char buf[64];
	if (!fgets(buf, sizeof buf, stdin))
		return 3;
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 4;
	}
	long (*f)(long) = (long (*)(long))dlsym(h, "lib_compute");
	if (!f)
		return 5;
	printf("loaded\n");
	for (long i = 1;; i++) {
		printf("%ld %ld\n", i, f(i));
		usleep(50000);
	}
}
