// strictlate: prints "ready", waits for a line on stdin, then enters seccomp
// strict mode (prctl(2) PR_SET_SECCOMP, SECCOMP_MODE_STRICT: only read,
// write, _exit and sigreturn from then on), prints "strict" and blocks in
// read(2).
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void) {
	char c;
	if (write(1, "ready\n", 6) != 6)
		return 1;
	while (read(0, &c, 1) == 1 && c != '\n')
		;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
		return 1;
	if (write(1, "strict\n", 7) != 7)
		syscall(SYS_exit, 1);
	for (;;)
		if (read(0, &c, 1) <= 0)
			syscall(SYS_exit, 0);
}
