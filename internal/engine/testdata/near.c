/* Linked between tiny_main.c and tiny.c: two functions laid out so that only
 * one byte of padding lies between nf2 and compute (nf2 is 15 bytes), while
 * 14 bytes lie between nf1 and nf2, within reach of a jmp rel8 from
 * compute's entry. */
__asm__(".text\n"
	".p2align 4\n"
	".globl nf1\n"
	".type nf1, @function\n"
	"nf1:\n"
	"	xorl %eax, %eax\n"
	"	ret\n"
	".size nf1, .-nf1\n"
	".p2align 4\n"
	".globl nf2\n"
	".type nf2, @function\n"
	"nf2:\n"
	"	movl $1, %eax\n"
	"	movl $2, %ecx\n"
	"	addl %ecx, %eax\n"
	"	nop\n"
	"	nop\n"
	"	ret\n"
	".size nf2, .-nf2\n"
	".p2align 4\n");
