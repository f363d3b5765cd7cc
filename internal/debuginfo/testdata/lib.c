/* A library with a static function: what a fix usually touches. */
#ifndef SCALE
#define SCALE 3
#endif
static int __attribute__((noinline)) scale(int x) { return x * SCALE; }
int api(int x) { return scale(x) + 1; }
