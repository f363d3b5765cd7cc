int shared = 5;
int unchanged(int x) { return x + shared; }
