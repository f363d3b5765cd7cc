/* The executable of the library case: step() is the library's. */
#include "../diff/harness.h"
long lib_step(long i);
long lib_calls(void);
long step(long i) { return lib_step(i); }
const char *word(long i) { (void)i; return lib_calls() > 0 ? "-" : "?"; }
