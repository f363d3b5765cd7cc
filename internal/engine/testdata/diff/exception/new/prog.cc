#include "../../harness.h"
#include <stdexcept>
/* check() throws; its caller step() catches. Only check() changes. */
__attribute__((noinline)) long check(long x) {
	if (x % 3 == 0)
		throw std::runtime_error("three");
	return x * 2;
}
long step(long i) {
	try {
		return check(i);
	} catch (const std::exception &e) {
		return -1;
	}
}
const char *word(long i) { (void)i; return "-"; }
