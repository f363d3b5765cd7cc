#include "util.h"

int other(int x) {
    return scale(x) + 2;
}
