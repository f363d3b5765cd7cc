#include <stdio.h>
#include <unistd.h>

int combine(int a, int b, int c, int d);

int main(int argc, char **argv) {
    volatile int b = 3, c = 5, d = 7;
    for (;;) {
        printf("%d\n", combine(argc * 10, b, c, d));
        fflush(stdout);
        usleep(20000);
    }
}
