/* A patch as hotpatch would build it: calls libc, uses the target's global
 * (extern, or defined here with -DDEFINE_COUNTER and bound to the target's copy
 * by the resolver), a new static variable, string literals, a table of
 * pointers, a static function and (with -DUSE_TLS) the target's thread-local
 * variable. */
#include <stdio.h>
#include <string.h>

#ifdef DEFINE_COUNTER
int counter = 100; /* the target's copy is used, not this one */
#else
extern int counter;
#endif
#ifdef USE_TLS
extern __thread int tlsvar;
#endif

static int calls; /* new state: lives in the patch's own bss */
static const char *const names[] = {"zero", "one", "two"};

__attribute__((noinline)) static int twice(int x)
{
	return 2 * x + calls;
}

int patched(char *buf, int len)
{
	calls++;
	counter += twice(10);
	int tls = 0;
#ifdef USE_TLS
	tls = ++tlsvar;
#endif
	size_t l = strlen(buf);
	return snprintf(buf, len, "patched %s %d %zu tls=%d", names[calls % 3], counter, l, tls);
}
