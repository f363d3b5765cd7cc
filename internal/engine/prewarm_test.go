package engine

import "testing"

func TestParseSyscallFile(t *testing.T) {
	for _, tc := range []struct {
		in     string
		sp, pc uint64
		ok     bool
	}{
		{"230 0x0 0x0 0x7ffe241b7ea0 0x7ffe241b7ee0 0x0 0x0 0x7ffe241b7e88 0x7f1f378f4503\n", 0x7ffe241b7e88, 0x7f1f378f4503, true},
		{"-1 0x7ffd1000 0x401000\n", 0x7ffd1000, 0x401000, true},
		{"running\n", 0, 0, false},
		{"", 0, 0, false},
		{"1 2 3 4 5 6 7 zz 0x1", 0, 0, false},
		{"-1 0x0 0x0", 0, 0, false},
	} {
		sp, pc, ok := parseSyscallFile(tc.in)
		if ok != tc.ok || (ok && (sp != tc.sp || pc != tc.pc)) {
			t.Errorf("parseSyscallFile(%q) = %#x %#x %v", tc.in, sp, pc, ok)
		}
	}
}
