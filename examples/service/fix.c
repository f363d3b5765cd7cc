/* The fixed validate_name, compiled on its own into fix.o.
 *
 * `served` is declared exactly as in service.c: hotpatch binds it to the
 * running program's variable instead of creating a fresh copy, so the request
 * count carries on across the patch. */
#include <string.h>

#define NAME_BUF 16

static unsigned long served;

int validate_name(const char *name) {
	served++;
	return strlen(name) < NAME_BUF; /* leave room for the terminating NUL */
}
