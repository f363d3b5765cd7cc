package patchfile

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
)

func samplePatch(t testing.TB) *Patch {
	p, err := New(Manifest{ID: "hp-test", Target: Target{Path: "/bin/x", BuildID: "0a1b2c", Machine: "amd64"},
		Functions: []Function{{Name: "f", Object: "new.o", Addr: 0x1000, Size: 16}}},
		[]NamedData{{Name: "new.o", Kind: "object", Data: []byte("\x7fELF object bytes")}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundTrip(t *testing.T) {
	p := samplePatch(t)
	name := filepath.Join(t.TempDir(), "x.hp")
	if err := p.WriteFile(name); err != nil {
		t.Fatal(err)
	}
	q, err := ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if q.ID != "hp-test" || string(q.Member("new.o")) != "\x7fELF object bytes" || len(q.Objects()) != 1 {
		t.Fatalf("round trip: %+v", q.Manifest)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := samplePatch(t).Encode()
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	cases := map[string][]byte{
		"empty":        nil,
		"magic":        mut(func(b []byte) []byte { b[1] = 'X'; return b }),
		"version":      mut(func(b []byte) []byte { b[8] = 7; return b }),
		"truncated":    mut(func(b []byte) []byte { return b[:len(b)-1] }),
		"bitflip":      mut(func(b []byte) []byte { b[len(b)-2] ^= 1; return b }),
		"trailing":     mut(func(b []byte) []byte { return append(b, 0) }),
		"manifest len": mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 1<<30); return b }),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrBadPatch) {
			t.Errorf("%s: got %v, want ErrBadPatch", name, err)
		}
	}
}

func TestUnsafeNames(t *testing.T) {
	for _, n := range []string{"../x", "/etc/passwd", "a/../../b", "", "a\x00b"} {
		_, err := New(Manifest{ID: "x", Target: Target{BuildID: "00"}}, []NamedData{{Name: n, Data: nil}})
		if !errors.Is(err, ErrBadPatch) {
			t.Errorf("name %q accepted", n)
		}
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := samplePatch(f).Encode()
	f.Add(good)
	f.Add([]byte(Magic + "\x01\x00\x00\x00\x02\x00\x00\x00{}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err == nil && p == nil {
			t.Fatal("nil patch without error")
		}
	})
}
