/* scalelib: the shared library of hotpatch-bench's library scale row
 * (libscale.so). SALT: see scale.c. */
#ifndef SALT
#define SALT ""
#endif
__attribute__((used)) static const char salt[] = SALT;

__attribute__((noinline)) long scale_lib_fn(long x) { return 2 * x + 1; }
