package linker

import (
	"fmt"
	"strings"
	"testing"
)

// farDataSource is one big function with n references to a library's array
// (each a PC-relative access the linker plans a GOT rewrite for).
func farDataSource(n int) string {
	var b strings.Builder
	b.WriteString("extern volatile int ext[4096];\nint patched(int x) {\n\tint s = 0;\n")
	for i := range n {
		fmt.Fprintf(&b, "\ts += ext[%d] * x; ext[%d] = s;\n", i, i+n)
	}
	b.WriteString("\treturn s;\n}\n")
	return b.String()
}

// TestFarDataMany: every reference of a big function gets its rewrite
// planned, and the object links out of the array's reach.
func TestFarDataMany(t *testing.T) {
	o := parse(t, farDataSource(300))
	r := &fakeResolver{addrs: map[string]uint64{"ext": 0x7f0000001000}}
	p, err := Prepare(o, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.fars) != 600 || len(p.Reach()) != 0 {
		t.Fatalf("%d rewrites planned, %d required reaches; want 600 and none", len(p.fars), len(p.Reach()))
	}
	if _, err := p.Link(0x10000000); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPrepareFarData measures Prepare on a function with 600 far data
// references (planning decodes the function).
func BenchmarkPrepareFarData(b *testing.B) {
	o := parse(b, farDataSource(300))
	r := &fakeResolver{addrs: map[string]uint64{"ext": 0x7f0000001000}}
	for b.Loop() {
		if _, err := Prepare(o, r); err != nil {
			b.Fatal(err)
		}
	}
}
