/* The hotpatch for svc.c. */
const char *message(void) { return "v2"; }
