/* Linked last: at -O2 this is "lea 0x1(%rdi),%eax; ret", 4 bytes, and .fini
 * follows it at once. */
int compute(int x) { return x + 1; }
