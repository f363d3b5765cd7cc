/* A program for the unlink tests: a switch (a PIC jump table in .rodata),
 * string literals, a static variable, a const table, calls between
 * functions of one section that the assembler resolves itself. */
#include <stdio.h>

static int calls;
static const int weights[4] = {1, 2, 3, 4};

__attribute__((noinline)) static int helper(int x) { calls++; return x * weights[x & 3]; }

__attribute__((noinline)) int classify(int x) {
    switch (x) {
    case 0: return helper(1);
    case 1: return helper(7) + 3;
    case 2: return 11;
    case 3: return helper(x) - 5;
    case 4: return 2 * helper(x);
    case 5: return 17;
    case 6: return helper(2) ^ 9;
    default: return -1;
    }
}

__attribute__((noinline)) const char *name(int x) {
#ifdef FIXED
    return x > 2 ? "large" : "tiny";
#else
    return x > 2 ? "large" : "small";
#endif
}

int main(int argc, char **argv) {
    (void)argv;
    printf("%d %s %d\n", classify(argc), name(argc), calls);
    return 0;
}
