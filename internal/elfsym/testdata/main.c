/* main.c: an executable linked against the test library. It calls strlen
 * through the PLT (JUMP_SLOT), takes a library function's address (GLOB_DAT in
 * a PIE) and uses a __thread variable of the library (TPOFF64). */
#include <string.h>

extern int lib1_func(int);
extern int lib2_func(int);
extern __thread int tls_var;

static char big_bss[8192];
int (*volatile fp)(int) = lib2_func;

__attribute__((noinline)) int local_work(int x)
{
	big_bss[x & 8191] = (char)x;
	return x * 5;
}

int main(int argc, char **argv)
{
	return (int)strlen(argv[0]) + lib1_func(argc) + fp(argc) + tls_var + local_work(argc);
}
