int compute(int x) {
	__builtin_ia32_pause();
	return x + 2;
}
