/* lib1.c: half of the test shared library. Its static helper has the same
 * name as the one in lib2.c; only the STT_FILE symbol tells them apart. */
__thread int tls_var = 5;
int lib_data = 3;
static char lib_bss[4096];

__attribute__((noinline)) static int helper(int x)
{
	lib_bss[x & 4095]++;
	return x + 1;
}

int lib1_func(int x)
{
	return helper(x) * 2 + tls_var;
}
