package fleet

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// TestReadBuildID compares the cheap reader with the full ELF parser on real
// files, and checks the files that have none.
func TestReadBuildID(t *testing.T) {
	f := getFixture(t)
	d := t.TempDir()
	noID := testutil.Compile(t, filepath.Join(d, "noid"), filepath.Join("testdata", "libfleet.c"), "-fPIC", "-shared", "-Wl,--build-id=none")
	m32 := ""
	if !testing.Short() {
		// 32-bit output needs multilib; use it when present.
		out := filepath.Join(d, "lib32.so")
		if err := tryCompile(out, filepath.Join("testdata", "libfleet.c"), "-m32", "-fPIC", "-shared", "-Wl,--build-id"); err == nil {
			m32 = out
		}
	}
	notELF := filepath.Join(d, "text")
	os.WriteFile(notELF, []byte("hello, not an ELF file at all\n"), 0o644)
	short := filepath.Join(d, "short")
	os.WriteFile(short, []byte("\x7fELF\x02\x01"), 0o644)

	cases := []struct {
		name    string
		file    string
		wantErr error // nil: must equal elfsym's answer
	}{
		{"shared library", f.lib, nil},
		{"pie executable", f.appA, nil},
		{"dlopen program", f.appDl, nil},
		{"no build-id", noID, ErrNoBuildID},
		{"not ELF", notELF, ErrNotELF},
		{"truncated header", short, ErrNotELF},
		{"32-bit", m32, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.file == "" {
				t.Skip("no 32-bit toolchain")
			}
			fh, err := os.Open(c.file)
			if err != nil {
				t.Fatal(err)
			}
			defer fh.Close()
			got, err := readBuildID(fh)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("got %q, %v; want %v", got, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			ef, err := elfsym.Open(fh)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ef.BuildID()
			if err != nil {
				t.Fatal(err)
			}
			if got != hex.EncodeToString(want) {
				t.Errorf("got %s, elfsym says %x", got, want)
			}
		})
	}
}

func tryCompile(out string, args ...string) error {
	return execCommand("gcc", append(args, "-o", out)...).Run()
}

// FuzzReadBuildID: the reader gets files of any process on the host; it
// must never panic, hang or allocate without bound.
func FuzzReadBuildID(f *testing.F) {
	f.Add([]byte("\x7fELF"))
	f.Add([]byte{})
	for _, p := range []string{"/bin/true", "/bin/sh"} {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			f.Add(b[:min(len(b), 4096)])
		}
	}
	// A minimal 64-bit header with one PT_NOTE holding a build-id note.
	hdr := make([]byte, 64+56+32)
	copy(hdr, "\x7fELF\x02\x01\x01")
	hdr[32] = 64             // e_phoff
	hdr[54], hdr[56] = 56, 1 // e_phentsize, e_phnum
	ph := hdr[64:]
	ph[0] = 4   // PT_NOTE
	ph[8] = 120 // p_offset
	ph[32] = 32 // p_filesz
	ph[48] = 4  // p_align
	note := hdr[120:]
	note[0], note[4], note[8] = 4, 16, 3
	copy(note[12:], "GNU\x00")
	copy(note[16:], bytes.Repeat([]byte{0xab}, 16))
	f.Add(hdr)
	f.Fuzz(func(t *testing.T, b []byte) {
		id, err := readBuildID(bytes.NewReader(b))
		if err == nil && id == "" {
			t.Fatal("empty build-id without error")
		}
	})
}

func TestReadBuildIDSynthetic(t *testing.T) {
	hdr := make([]byte, 64+56+32)
	copy(hdr, "\x7fELF\x02\x01\x01")
	hdr[32] = 64
	hdr[54], hdr[56] = 56, 1
	ph := hdr[64:]
	ph[0], ph[8], ph[32], ph[48] = 4, 120, 32, 4
	note := hdr[120:]
	note[0], note[4], note[8] = 4, 16, 3
	copy(note[12:], "GNU\x00")
	copy(note[16:], bytes.Repeat([]byte{0xab}, 16))
	id, err := readBuildID(bytes.NewReader(hdr))
	if err != nil || id != "abababababababababababababababab" {
		t.Fatalf("got %q %v", id, err)
	}
	// Note sizes pointing past the segment: no build-id, no panic.
	note[4] = 200
	if _, err := readBuildID(bytes.NewReader(hdr)); err == nil {
		t.Fatal("accepted a note running past its segment")
	}
}

var execCommand = exec.Command
