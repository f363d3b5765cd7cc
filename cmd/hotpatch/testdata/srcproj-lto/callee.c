/* mix: not inlined, not cloned, so callers call it; with -fipa-ra (on at
 * -O2) and LTO, a caller in another file knows which registers it clobbers. */
__attribute__((noinline, noclone)) int mix(int x) {
    return x + 1;
}
