package statecache

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestStoreLoad(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "state"))
	if _, ok := d.Load("x"); ok {
		t.Fatal("an entry before any Store")
	}
	d.Store("x", []byte("hello"))
	if p, ok := d.Load("x"); !ok || string(p) != "hello" {
		t.Fatalf("Load = %q, %v", p, ok)
	}
	d.Store("x", []byte("again"))
	if p, ok := d.Load("x"); !ok || string(p) != "again" {
		t.Fatalf("Load after a second Store = %q, %v", p, ok)
	}
	// Anything else in the file: no entry (the caller recomputes).
	path := filepath.Join(string(d), "x")
	for _, bad := range [][]byte{nil, []byte("hello"), append(Encode([]byte("hello")), '!'), bytes.Replace(Encode([]byte("hello")), []byte("hello"), []byte("jello"), 1)} {
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if p, ok := d.Load("x"); ok {
			t.Errorf("Load of %q = %q, want nothing", bad, p)
		}
	}
	// A symbolic link is never followed.
	os.Remove(path)
	os.WriteFile(filepath.Join(t.TempDir(), "y"), Encode([]byte("planted")), 0o600)
	os.Symlink(filepath.Join(t.TempDir(), "y"), path)
	if _, ok := d.Load("x"); ok {
		t.Error("Load followed a symbolic link")
	}
	// A directory others may write is not used.
	os.Chmod(string(d), 0o777)
	d.Store("z", []byte("v"))
	if _, err := os.Stat(filepath.Join(string(d), "z")); err == nil {
		t.Error("Store wrote into a directory others may write")
	}
	if _, ok := Dir("").Load("x"); ok {
		t.Error("the disabled cache has an entry")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode([]byte("syscall 927 00:00 0 [vdso]\n")))
	f.Add([]byte("hotpatch-cache 1 00 1\nx"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err == nil && !bytes.Equal(Encode(p), b) {
			t.Fatalf("Decode accepted %q, which Encode does not produce", b)
		}
	})
}
