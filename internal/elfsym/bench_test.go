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

// BenchmarkSymbolsRedis: a large stripped executable (Debian's
// redis-server exports its 4,300 symbols for its modules).
func BenchmarkSymbolsRedis(b *testing.B) {
	fh, err := os.Open("/usr/bin/redis-server")
	if err != nil {
		b.Skip(err)
	}
	defer fh.Close()
	for b.Loop() {
		f, err := Open(fh)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Symbols(); err != nil {
			b.Fatal(err)
		}
	}
}
