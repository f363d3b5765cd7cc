/* Another program: not a version of greet.c. */
#include <stdio.h>

int main(void) {
	puts("other");
	return 0;
}
