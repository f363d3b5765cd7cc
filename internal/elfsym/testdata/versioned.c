/* Two versions of one function (the old one non-default) and plain
 * exported data, for the hash-table lookups. */
int old_impl(int x) { return x + 1; }
int new_impl(int x) { return x + 2; }
__asm__(".symver old_impl,vfunc@VER_1");
__asm__(".symver new_impl,vfunc@@VER_2");
int exported_data = 42;
int plain_func(void) { return exported_data; }
