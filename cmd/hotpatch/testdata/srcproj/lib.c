#include "util.h"

int compute(int x) {
    return scale(x) + 1;
}
