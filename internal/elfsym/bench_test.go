package elfsym

import (
	"os"
	"testing"
)

// BenchmarkSymbolsLibc measures what a fresh `hotpatch apply` pays to read the
// symbols of the C library (opening and parsing it, both symbol tables).
func BenchmarkSymbolsLibc(b *testing.B) {
	const libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err != nil {
		b.Skipf("no %s: %v", libc, err)
	}
	for b.Loop() {
		r, err := os.Open(libc)
		if err != nil {
			b.Fatal(err)
		}
		f, err := Open(r)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Symbols(); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
