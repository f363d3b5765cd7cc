/* plugin.c: the library target.c loads with dlopen(). */
int plugin_func(int x)
{
	return x + 42;
}
