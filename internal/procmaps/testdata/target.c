/* target.c: a process for procmaps tests. It dlopen()s the library named by
 * argv[1], maps the data file argv[2] and /dev/zero (shared, which shows as
 * "/dev/zero (deleted)"), neither of which is a module, prints the run-time
 * addresses of one of its own functions, of the library's plugin_func and of
 * libc's printf, then waits until stdin closes. */
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((noinline)) int target_func(int x)
{
	return x * 2;
}

int main(int argc, char **argv)
{
	void *h, *f;
	char c;
	int fd;

	if (argc < 3)
		return 2;
	fd = open(argv[2], O_RDONLY);
	if (fd < 0 || mmap(0, 4096, PROT_READ, MAP_PRIVATE, fd, 0) == MAP_FAILED)
		return 3;
	fd = open("/dev/zero", O_RDWR);
	if (fd < 0 || mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED)
		return 4;
	h = dlopen(argv[1], RTLD_NOW);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	f = dlsym(h, "plugin_func");
	printf("%p %p %p\n", (void *)&target_func, f, (void *)&printf);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	return target_func(argc);
}
