package sign

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hotpatch/hotpatch/internal/patchfile"
)

func samplePatch(t *testing.T) *patchfile.Patch {
	t.Helper()
	p, err := patchfile.New(patchfile.Manifest{ID: "hp-sign", Target: patchfile.Target{Path: "/bin/x", BuildID: "0a1b", Machine: "amd64"},
		Functions: []patchfile.Function{{Name: "f", Object: "new.o", Addr: 0x1000, Size: 16}}},
		[]patchfile.NamedData{{Name: "new.o", Kind: patchfile.KindObject, Data: []byte("\x7fELF object")}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newKey(t *testing.T, dir, name string) (ed25519.PrivateKey, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	pub, id, err := GenerateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if pub != path+".pub" || len(id) != 16 {
		t.Fatalf("GenerateKey: %s %s", pub, id)
	}
	priv, err := LoadPrivateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

// encodeDecode goes through the file format, as build and apply do.
func encodeDecode(t *testing.T, p *patchfile.Patch) *patchfile.Patch {
	t.Helper()
	b, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	q, err := patchfile.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	old := umask(0o077) // the public key must still be 0644
	defer umask(old)
	newKey(t, dir, "k")
	for name, want := range map[string]os.FileMode{"k": 0o600, "k.pub": 0o644} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", name, st.Mode().Perm(), want)
		}
	}
	if _, _, err := GenerateKey(filepath.Join(dir, "k")); err == nil {
		t.Error("GenerateKey overwrote an existing key")
	}
	// A public key is not a private key and vice versa; garbage is neither.
	os.WriteFile(filepath.Join(dir, "junk"), []byte("not a key"), 0o600)
	for _, c := range []struct {
		name string
		load func(string) error
	}{
		{"k.pub", func(p string) error { _, err := LoadPrivateKey(p); return err }},
		{"k", func(p string) error { _, err := LoadPublicKey(p); return err }},
		{"junk", func(p string) error { _, err := LoadPublicKey(p); return err }},
	} {
		if err := c.load(filepath.Join(dir, c.name)); !errors.Is(err, ErrBadKey) {
			t.Errorf("%s: got %v, want ErrBadKey", c.name, err)
		}
	}
}

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	priv, pub := newKey(t, dir, "vendor")
	other, otherPub := newKey(t, dir, "other")
	trustDir := filepath.Join(dir, "trusted.d")
	os.Mkdir(trustDir, 0o755)
	b, _ := os.ReadFile(pub)
	os.WriteFile(filepath.Join(trustDir, "vendor.pub"), b, 0o644)
	os.WriteFile(filepath.Join(trustDir, "README"), []byte("ignored: not *.pub"), 0o644)

	signed := samplePatch(t)
	if err := Sign(signed, priv); err != nil {
		t.Fatal(err)
	}
	signed = encodeDecode(t, signed)
	byOther := samplePatch(t)
	if err := Sign(byOther, other); err != nil {
		t.Fatal(err)
	}
	byOther = encodeDecode(t, byOther)

	cases := []struct {
		name  string
		p     *patchfile.Patch
		files []string
		dirs  []string
		want  error
	}{
		{"trusted by file", signed, []string{pub}, nil, nil},
		{"trusted by dir", signed, nil, []string{trustDir}, nil},
		{"several keys", signed, []string{otherPub, pub}, []string{filepath.Join(dir, "missing")}, nil},
		{"no keys", signed, nil, nil, ErrUntrusted},
		{"other key", signed, []string{otherPub}, nil, ErrUntrusted},
		{"signed by untrusted", byOther, []string{pub}, []string{trustDir}, ErrUntrusted},
		{"unsigned", encodeDecode(t, samplePatch(t)), []string{pub}, nil, ErrUnsigned},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ring, err := LoadKeyring(c.files, c.dirs...)
			if err != nil {
				t.Fatal(err)
			}
			k, err := Verify(c.p, ring)
			if !errors.Is(err, c.want) || (c.want == nil) != (k != nil) {
				t.Fatalf("Verify: %v, %v; want %v", k, err, c.want)
			}
		})
	}
}

// TestTampered changes a signed bundle after signing: in the manifest (the
// member hashes still match, only the signature catches it) and in the
// signature itself.
func TestTampered(t *testing.T) {
	dir := t.TempDir()
	priv, pub := newKey(t, dir, "vendor")
	ring, err := LoadKeyring([]string{pub})
	if err != nil {
		t.Fatal(err)
	}
	p := samplePatch(t)
	p.Description = "harmless"
	if err := Sign(p, priv); err != nil {
		t.Fatal(err)
	}
	good, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(encodeDecode(t, p), ring); err != nil {
		t.Fatal(err)
	}
	edit := func(from, to string) []byte {
		s := string(good)
		if !strings.Contains(s, from) {
			t.Fatalf("%q not in bundle", from)
		}
		return []byte(strings.Replace(s, from, to, 1))
	}
	for name, b := range map[string][]byte{
		"manifest": edit("harmless", "harmful!"),
		"addr":     edit(`"addr": 4096`, `"addr": 4097`),
	} {
		q, err := patchfile.Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := Verify(q, ring); !errors.Is(err, ErrBadSignature) || !errors.Is(err, patchfile.ErrBadPatch) {
			t.Errorf("%s: got %v, want ErrBadSignature", name, err)
		}
	}
	// A flipped bit in the signature value.
	q := encodeDecode(t, p)
	q.Signature().Value[3] ^= 1
	if _, err := Verify(q, ring); !errors.Is(err, ErrBadSignature) {
		t.Errorf("flipped signature: got %v", err)
	}
	// Changing a signed patch in memory and encoding it is refused.
	q = encodeDecode(t, p)
	q.ID = "hp-other"
	if _, err := q.Encode(); !errors.Is(err, patchfile.ErrSignatureStale) {
		t.Errorf("stale signature encoded: %v", err)
	}
}
