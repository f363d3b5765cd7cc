package unwind

import (
	"encoding/binary"
	"testing"
)

// FuzzFunctionRanges: hostile .eh_frame contents never panic the caller
// and give only non-empty, sorted ranges.
func FuzzFunctionRanges(f *testing.F) {
	f.Add([]byte{0x10, 0, 0, 0, 0, 0, 0, 0, 1, 'z', 'R', 0, 1, 0x78, 0x10, 1, 0x1b, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, err := rangesOf(data, binary.LittleEndian, 8, 0x1000)
		if err != nil {
			return
		}
		for i, r := range rs {
			if r.End <= r.Begin || (i > 0 && rs[i-1].Begin > r.Begin) {
				t.Fatalf("bad ranges %v", rs)
			}
		}
	})
}
