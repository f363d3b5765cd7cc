/* Vectorisable loops over global arrays: with -O3 -mavx2 / -mavx512f gcc emits
   VEX / EVEX instructions with RIP-relative operands. */
#define N 1024
float a[N], b[N], c[N];
double d[N], e[N];
int ia[N], ib[N];
unsigned char bytes[N];

void vadd(void) {
	for (int i = 0; i < N; i++)
		a[i] = b[i] + c[i] * 3.0f;
}

void vfma(float k) {
	for (int i = 0; i < N; i++)
		a[i] = a[i] * k + b[i];
}

double vdot(void) {
	double s = 0;
	for (int i = 0; i < N; i++)
		s += d[i] * e[i];
	return s;
}

void vint(int k) {
	for (int i = 0; i < N; i++)
		ia[i] = (ib[i] << 3) + (ia[i] >> 2) * k + (ib[i] > k ? 5 : 7);
}

int vmax(void) {
	int m = ia[0];
	for (int i = 1; i < N; i++)
		if (ia[i] > m)
			m = ia[i];
	return m;
}

void vbytes(unsigned char k) {
	for (int i = 0; i < N; i++)
		bytes[i] = (unsigned char)((bytes[i] ^ k) + (bytes[i] >> 1));
}

void vshuf(void) {
	for (int i = 0; i < N; i += 2) {
		float t = a[i];
		a[i] = a[i + 1];
		a[i + 1] = t;
	}
}

void vcvt(void) {
	for (int i = 0; i < N; i++)
		d[i] = (double)ia[i] + (double)a[i];
}

void vabs(int n) {
	for (int i = 0; i < n; i++)
		ib[i] = ib[i] < 0 ? -ib[i] : ib[i];
}
