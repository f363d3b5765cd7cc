/* A tiny hot function whose threads are usually stopped inside its first
 * bytes: at -O2 "pause; lea 0x1(%rdi),%eax; ret" (f3 90 8d 47 01 c3), and
 * pause is slow, so a thread is most often interrupted just after it, at
 * offset 2, inside the 5 bytes the jump overwrites. */
int compute(int x) {
	__builtin_ia32_pause();
	return x + 1;
}
