/* Assorted functions for decoder and redirect-planner tests. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int inc(int x) { return x + 1; }

int counter;

__attribute__((noipa)) int helper(int x) { counter += x; return counter * 3; }

int calls_helper(int a, int b) { return helper(a) + helper(b) + 1; }

int tail_calls_helper(int a) { return helper(a * 7); }

long sum_loop(const long *v, int n) {
	long s = 0;
	for (int i = 0; i < n; i++)
		s += v[i] * (i & 3);
	return s;
}

int classify(int c) {
	switch (c) {
	case 0: return 11;
	case 1: return 22;
	case 2: return helper(3);
	case 3: return 44;
	case 4: return 55;
	case 5: return helper(c);
	case 7: return 77;
	default: return -1;
	}
}

int vsum(int n, ...) {
	va_list ap;
	int s = 0;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		s += va_arg(ap, int);
	va_end(ap);
	return s;
}

double vavg(int n, ...) {
	va_list ap;
	double s = 0;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		s += va_arg(ap, double);
	va_end(ap);
	return n ? s / n : 0;
}

int (*fnptr)(int) = inc;

int indirect(int x) { return fnptr(x) + fnptr(x + 1); }

__attribute__((noreturn)) void die(const char *msg) {
	fprintf(stderr, "%s\n", msg);
	abort();
}

size_t copy_str(char *dst, const char *src, size_t n) {
	size_t l = strlen(src);
	if (l >= n)
		die("too long");
	memcpy(dst, src, l + 1);
	return l;
}

unsigned long long mix(unsigned long long x) {
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

int fact(int n) { return n <= 1 ? 1 : n * fact(n - 1); }

_Thread_local int tls_counter;
int bump_tls(void) { return ++tls_counter; }

float fsum(const float *v, int n) {
	float s = 0;
	for (int i = 0; i < n; i++)
		s += v[i];
	return s;
}
