int shared[2] = {5, 0};
int unchanged(int x) { return x + shared[0]; }
