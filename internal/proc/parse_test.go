package proc

import (
	"os"
	"testing"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		in      string
		state   byte
		flags   uint64
		wantErr bool
	}{
		{"1 (init) S 0 1 1 0 -1 4194560 100 0", 'S', 4194560, false},
		{"42 (a) b) (c) R 1 42 42 0 -1 2097216 0 0", 'R', 2097216, false},
		{"7 (x y) Z 1 7 7 0 -1 4194316 0", 'Z', 4194316, false},
		{"7 (x) t 1", 0, 0, true},
		{"no paren", 0, 0, true},
		{"7 (x) S 1 7 7 0 -1 notanumber", 0, 0, true},
		{"7 (x) SS 1 7 7 0 -1 1", 0, 0, true},
		{"7 (x) S 1 7 7 0 -1 1 0 0 0 0 0 0 0 0 20 0 1 0 notanumber 0", 0, 0, true},
	}
	for _, tc := range tests {
		si, err := parseStat([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("parseStat(%q): err %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && (si.State != tc.state || si.Flags != tc.flags) {
			t.Errorf("parseStat(%q) = %+v", tc.in, si)
		}
	}
	// Our own stat parses.
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip(err)
	}
	if si, err := parseStat(data); err != nil || (si.State != 'R' && si.State != 'S') || si.StartTime == 0 {
		t.Errorf("/proc/self/stat: %+v %v", si, err)
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in      string
		want    statusInfo
		wantErr bool
	}{
		{"Name:\tcat\nState:\tR (running)\nTracerPid:\t0\n", statusInfo{'R', 0, "cat"}, false},
		{"Name:\tgdb target\nState:\tt (tracing stop)\nTracerPid:\t1234\n", statusInfo{'t', 1234, "gdb target"}, false},
		{"Name:\tx\nState:\tS\n", statusInfo{}, true},
		{"TracerPid:\tabc\n", statusInfo{}, true},
		{"State:\t\nTracerPid:\t0\n", statusInfo{}, true},
	}
	for _, tc := range tests {
		si, err := parseStatus([]byte(tc.in))
		if (err != nil) != tc.wantErr {
			t.Errorf("parseStatus(%q): err %v, want error %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil && si != tc.want {
			t.Errorf("parseStatus(%q) = %+v, want %+v", tc.in, si, tc.want)
		}
	}
}

func TestParseMaps(t *testing.T) {
	in := "55d0c0a00000-55d0c0a01000 r-xp 00001000 08:01 123 /usr/bin/my prog\n" +
		"7ffd1e1f3000-7ffd1e1f5000 r-xp 00000000 00:00 0                          [vdso]\n" +
		"7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
	ms, err := parseMaps([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{0x55d0c0a00000, 0x55d0c0a01000, "r-xp", "/usr/bin/my prog", "00001000 08:01 123"},
		{0x7ffd1e1f3000, 0x7ffd1e1f5000, "r-xp", "[vdso]", ""},
		{0x7f0000000000, 0x7f0000001000, "rw-p", "", ""},
	}
	if len(ms) != len(want) {
		t.Fatalf("got %d mappings", len(ms))
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("mapping %d = %+v, want %+v", i, ms[i], want[i])
		}
	}
	for _, bad := range []string{"zz-10 r-xp 0 0:0 0\n", "10-5 r-xp 0 0:0 0\n", "10 r-xp 0 0:0 0\n", "1-2 r\n"} {
		if _, err := parseMaps([]byte(bad)); err == nil {
			t.Errorf("parseMaps(%q) succeeded", bad)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (init) S 0 1 1 0 -1 4194560 100 0"))
	f.Add([]byte("42 (a) b) R 1 42 42 0 -1 2097216"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if si, err := parseStat(data); err == nil && si.State == 0 {
			t.Fatalf("parseStat(%q) succeeded with no state", data)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("Name:\tcat\nState:\tR (running)\nTracerPid:\t0\n"))
	f.Add([]byte("TracerPid:\t-1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseStatus(data)
	})
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte("55d0c0a00000-55d0c0a01000 r-xp 00001000 08:01 123 /usr/bin/prog\n"))
	f.Add([]byte("7ffd1e1f3000-7ffd1e1f5000 r-xp 00000000 00:00 0 [vdso]\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := parseMaps(data)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.End < m.Start {
				t.Fatalf("mapping %+v ends before it starts", m)
			}
		}
	})
}
