package procmaps

import (
	"os"
	"testing"
)

// BenchmarkParseBytes parses this process's own maps.
func BenchmarkParseBytes(b *testing.B) {
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := ParseBytes(data); err != nil {
			b.Fatal(err)
		}
	}
}
