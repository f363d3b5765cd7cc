extern long no_such_symbol_anywhere(long);
long compute(long x) { return no_such_symbol_anywhere(x); }
