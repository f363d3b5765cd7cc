/* A target whose function tiny() is shorter than any jump, with no padding
 * after it (built with -falign-functions=1): it cannot be redirected. */
#include <stdio.h>
__attribute__((noinline)) int tiny(void) { return 0; }
__attribute__((noinline)) int next(int x) { return x * 3 + tiny(); }
int main(int argc, char **argv) {
	(void)argv;
	printf("%d\n", next(argc));
	return 0;
}
