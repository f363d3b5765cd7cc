#include <cstdio>
#include <unistd.h>
#include "shape.h"

int main() {
    Shape s{10};
    for (;;) {
        std::printf("%d\n", s.area());
        std::fflush(stdout);
        usleep(20000);
    }
}
