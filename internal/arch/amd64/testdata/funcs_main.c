/* Gives funcs.c a main so that it links into an executable. */
int main(void) { return 0; }
