/* outer() encloses two more function symbols, as hand-written assembly can:
 * inner starts on an instruction boundary 10 bytes in, midinsn 2 bytes into
 * outer's first instruction (the movabs immediate). A manifest naming
 * midinsn, or naming outer and inner together, must be refused. */
#include <stdio.h>
#include <unistd.h>

long outer(long x);
long inner(long x);
long midinsn(long x);

asm(".text\n"
    ".globl outer\n.type outer,@function\n"
    "outer:\n"
    "  movabs $0x1122334455667788, %rax\n"
    "inner:\n"
    "  lea 1(%rdi), %rax\n"
    "  ret\n"
    ".size outer, .-outer\n"
    ".globl inner\n.type inner,@function\n.size inner, 5\n"
    ".globl midinsn\n.type midinsn,@function\n.set midinsn, outer+2\n.size midinsn, 8\n");

/* Called through pointers: no direct caller, so no -fipa-ra hazard. */
long (*volatile po)(long) = outer, (*volatile pi)(long) = inner;

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (;;) {
		printf("%ld %ld\n", po(0), pi(1));
		usleep(10000);
	}
}
