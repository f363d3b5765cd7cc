int mix(int x);

/* b, c and d stay in argument registers across the call as long as mix
 * clobbers none of them (what -fipa-ra lets GCC know under LTO). */
__attribute__((noinline, noclone)) int combine(int a, int b, int c, int d) {
    int r = mix(a);
    return r + b * c + d;
}
