/* lib2.c: the other half; another static helper. */
__attribute__((noinline)) static int helper(int x)
{
	return x * 3 + 7;
}

int lib2_func(int x)
{
	return helper(x) - 1;
}
