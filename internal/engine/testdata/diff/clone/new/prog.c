#include "../../harness.h"
static long table[64];
/* With -O2, GCC splits the loop of fill off its early return (fill.part.0,
 * ipa-split); -O1 does not, so a target built with -O1 has no such clone. */
static __attribute__((noinline)) long fill(long *t, long n) {
    if (!t)
        return 0;
    long s = 0;
    for (long k = 0; k < n; k++) {
        t[k & 63] += k * 7 + (s ^ k);
        s += t[(k * 5) & 63] % 13;
    }
    return s;
}
long step(long i) { return fill(i & 1 ? table : table, i % 17 + 3) + 1; }
const char *word(long i) { (void)i; return "-"; }
