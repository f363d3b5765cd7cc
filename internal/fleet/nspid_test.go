package fleet

import "testing"

func TestParseNSpid(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"Name:\tapp\nNSpid:\t4242\t7\nNSsid:\t1\n", 7},
		{"NSpid:\t4242\t300\t7\n", 7}, // nested namespaces: the innermost
		{"NSpid:\t4242\n", 0},         // the host's namespace
		{"Name:\tapp\n", 0},           // kernel before 4.1
		{"NSpid:\t4242\tx\n", 0},
		{"NSpid:", 0},
	} {
		if got := parseNSpid([]byte(tc.in)); got != tc.want {
			t.Errorf("parseNSpid(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func FuzzParseNSpid(f *testing.F) {
	f.Add([]byte("NSpid:\t4242\t7\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n := parseNSpid(b); n < 0 {
			t.Fatalf("negative pid %d", n)
		}
	})
}
