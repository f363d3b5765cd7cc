/* Not a version of svc.c: a coldpatch built from it is refused. */
int main(void) { return 0; }
