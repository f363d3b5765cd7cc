package patchfile

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func samplePatch(t testing.TB) *Patch {
	p, err := New(Manifest{ID: "hp-test", Target: Target{Path: "/bin/x", BuildID: "0a1b2c", Machine: "amd64"},
		Functions: []Function{{Name: "f", Object: "new.o", Addr: 0x1000, Size: 16}}},
		[]NamedData{{Name: "new.o", Kind: KindObject, Data: []byte("\x7fELF object bytes")}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const (
	origSHA = "1111111111111111111111111111111111111111111111111111111111111111"
	fixed   = "\x7fELF the fixed executable"
)

func coldPatch(t testing.TB) *Patch {
	p := samplePatch(t)
	if err := p.AddCold([]byte(fixed), origSHA, "beef"); err != nil {
		t.Fatal(err)
	}
	return p
}

// signedPatch carries a syntactically valid signature block (its value is
// not checked here: see package sign).
func signedPatch(t testing.TB) *Patch {
	p := coldPatch(t)
	if err := p.SetSignature(&Signature{Algorithm: "ed25519", KeyID: "0011223344556677",
		PublicKey: bytes.Repeat([]byte{1}, 32), Value: bytes.Repeat([]byte{2}, 64)}); err != nil {
		t.Fatal(err)
	}
	return p
}

// raw assembles a bundle by hand, so that tests can write what Encode never
// would.
func raw(version uint32, manifest, sig string, members ...string) []byte {
	var b bytes.Buffer
	b.WriteString(Magic)
	var h [12]byte
	binary.LittleEndian.PutUint32(h[0:], version)
	binary.LittleEndian.PutUint32(h[4:], uint32(len(manifest)))
	binary.LittleEndian.PutUint32(h[8:], uint32(len(sig)))
	b.Write(h[:])
	b.WriteString(manifest + sig + strings.Join(members, ""))
	return b.Bytes()
}

const objSHA = "ad6d06d0d31f5e4b0d8d0e4f51e28d4d1d0fd1b5a6c0c5a3a7d1b0d41d3c0e5d" // any well-formed hash

// manifestWith returns a one-member manifest whose member is described by
// member (JSON fields).
func manifestWith(format int, member string) string {
	return fmt.Sprintf(`{"format":%d,"id":"x","target":{"path":"/bin/x","build_id":"00","machine":"amd64"},"functions":[],"members":[%s]}`, format, member)
}

func TestRoundTrip(t *testing.T) {
	for name, p := range map[string]*Patch{"plain": samplePatch(t), "cold": coldPatch(t), "signed": signedPatch(t)} {
		t.Run(name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "x.hp")
			if err := p.WriteFile(file); err != nil {
				t.Fatal(err)
			}
			q, err := ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if q.ID != "hp-test" || string(q.Member("new.o")) != "\x7fELF object bytes" || len(q.Objects()) != 1 {
				t.Fatalf("round trip: %+v", q.Manifest)
			}
			if (p.Cold != nil) != (q.Cold != nil) || string(q.ColdData()) != string(p.ColdData()) {
				t.Fatalf("coldpatch: %+v", q.Cold)
			}
			if (p.Signature() != nil) != (q.Signature() != nil) {
				t.Fatal("signature lost")
			}
			// The signed message is the stored manifest, byte for byte, so
			// re-encoding a read bundle gives the same file.
			a, _ := p.Encode()
			b, err := q.Encode()
			if err != nil || !bytes.Equal(a, b) {
				t.Fatalf("re-encode differs: %v", err)
			}
			m1, _ := p.SignedMessage()
			m2, _ := q.SignedMessage()
			if !bytes.Equal(m1, m2) {
				t.Fatal("signed message changed")
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := signedPatch(t).Encode()
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	mlen := int(binary.LittleEndian.Uint32(good[12:]))
	obj := "\x7fELF object bytes"
	objMember := func(name string, size int64, sum string) string {
		return fmt.Sprintf(`{"name":%q,"size":%d,"sha256":%q,"kind":"object"}`, name, size, sum)
	}
	sum := hashHex([]byte(obj))
	cases := map[string][]byte{
		"empty":               nil,
		"short header":        good[:HeaderSize-1],
		"magic":               mut(func(b []byte) []byte { b[1] = 'X'; return b }),
		"version 1":           mut(func(b []byte) []byte { b[8] = 1; return b }),
		"version 7":           mut(func(b []byte) []byte { b[8] = 7; return b }),
		"truncated member":    mut(func(b []byte) []byte { return b[:len(b)-1] }),
		"truncated manifest":  good[:HeaderSize+mlen/2],
		"bitflip member":      mut(func(b []byte) []byte { b[len(b)-2] ^= 1; return b }),
		"bitflip manifest":    mut(func(b []byte) []byte { b[HeaderSize+mlen/2] ^= 0x40; return b }),
		"bitflip signature":   mut(func(b []byte) []byte { b[HeaderSize+mlen+1] ^= 0x40; return b }),
		"trailing":            mut(func(b []byte) []byte { return append(b, 0) }),
		"manifest len":        mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 1<<30); return b }),
		"signature len":       mut(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16:], 1<<20); return b }),
		"manifest format":     raw(2, manifestWith(1, objMember("a.o", int64(len(obj)), sum)), "", obj),
		"member ..":           raw(2, manifestWith(2, objMember("..", int64(len(obj)), sum)), "", obj),
		"member ../x":         raw(2, manifestWith(2, objMember("../x", int64(len(obj)), sum)), "", obj),
		"member a/../../x":    raw(2, manifestWith(2, objMember("a/../../x", int64(len(obj)), sum)), "", obj),
		"absolute member":     raw(2, manifestWith(2, objMember("/etc/passwd", int64(len(obj)), sum)), "", obj),
		"hash mismatch":       raw(2, manifestWith(2, objMember("a.o", int64(len(obj)), objSHA)), "", obj),
		"gigabyte member":     raw(2, manifestWith(2, objMember("a.o", 4<<30, sum)), "", obj),
		"negative size":       raw(2, manifestWith(2, objMember("a.o", -1, sum)), "", obj),
		"unknown kind":        raw(2, manifestWith(2, strings.Replace(objMember("a.o", int64(len(obj)), sum), "object", "script", 1)), "", obj),
		"unknown field":       raw(2, strings.Replace(manifestWith(2, ""), `"format"`, `"evil":1,"format"`, 1), ""),
		"trailing json":       raw(2, manifestWith(2, "")+"{}", ""),
		"signature not json":  raw(2, manifestWith(2, ""), "garbage"),
		"signature extra key": raw(2, manifestWith(2, ""), `{"algorithm":"ed25519","x":1}`),
		// encoding/json matches keys case-insensitively and keeps the last
		// of repeated keys: "ID" would override "id" (issue 11 item 13).
		"key in other case":           raw(2, strings.Replace(manifestWith(2, ""), `"id":"x"`, `"id":"x","ID":"y"`, 1), ""),
		"only key in other case":      raw(2, strings.Replace(manifestWith(2, ""), `"id":"x"`, `"Id":"x"`, 1), ""),
		"duplicate key":               raw(2, strings.Replace(manifestWith(2, ""), `"id":"x"`, `"id":"x","id":"y"`, 1), ""),
		"nested key in other case":    raw(2, strings.Replace(manifestWith(2, objMember("a.o", int64(len(obj)), sum)), `"sha256"`, `"SHA256"`, 1), "", obj),
		"nested duplicate key":        raw(2, strings.Replace(manifestWith(2, objMember("a.o", int64(len(obj)), sum)), `"kind":"object"`, `"kind":"object","kind":"cold"`, 1), "", obj),
		"target key in other case":    raw(2, strings.Replace(manifestWith(2, ""), `"build_id"`, `"Build_ID"`, 1), ""),
		"signature key in other case": raw(2, manifestWith(2, ""), `{"Algorithm":"ed25519"}`),
		"many members": raw(2, manifestWith(2, strings.Repeat(objMember("a.o", 0, hashHex(nil))+",", MaxMembers)+
			objMember("b.o", 0, hashHex(nil))), ""),
		"sizes add up to gigabytes": raw(2, manifestWith(2, objMember("a.o", MaxTotalSize, sum)+","+objMember("b.o", MaxTotalSize, sum)), ""),
	}
	for name, b := range cases {
		if _, err := Decode(b); !errors.Is(err, ErrBadPatch) {
			t.Errorf("%s: got %v, want ErrBadPatch", name, err)
		}
	}
	// The hand-made bundle is valid when nothing is wrong with it.
	if _, err := Decode(raw(2, manifestWith(2, objMember("a.o", int64(len(obj)), sum)), "", obj)); err != nil {
		t.Fatalf("valid hand-made bundle: %v", err)
	}
}

// TestColdRejects: manifests whose coldpatch entry is inconsistent.
func TestColdRejects(t *testing.T) {
	cases := map[string]func(m *Manifest){
		"no original hash":     func(m *Manifest) { m.Target.SHA256 = "" },
		"fixed is original":    func(m *Manifest) { m.Target.SHA256 = m.Cold.SHA256 },
		"hash differs":         func(m *Manifest) { m.Cold.SHA256 = origSHA },
		"member missing":       func(m *Manifest) { m.Cold.Member = "cold/nothing" },
		"member is an object":  func(m *Manifest) { m.Cold.Member = "new.o" },
		"relative target path": func(m *Manifest) { m.Target.Path = "bin/x" },
		"unclean target path":  func(m *Manifest) { m.Target.Path = "/bin/../etc/x" },
		"cold member, no cold": func(m *Manifest) { m.Cold = nil },
		"bad build-id":         func(m *Manifest) { m.Cold.BuildID = "xyz" },
	}
	for name, f := range cases {
		p := coldPatch(t)
		m := p.Manifest
		c := *m.Cold
		m.Cold = &c
		f(&m)
		if err := validate(&m); !errors.Is(err, ErrBadPatch) {
			t.Errorf("%s: got %v, want ErrBadPatch", name, err)
		}
	}
	p := coldPatch(t)
	if err := p.AddCold([]byte("again"), origSHA, ""); !errors.Is(err, ErrBadPatch) {
		t.Errorf("second coldpatch: %v", err)
	}
}

func TestUnsafeNames(t *testing.T) {
	for _, n := range []string{"../x", "/etc/passwd", "a/../../b", "", "a\x00b", "..", "a\\b"} {
		_, err := New(Manifest{ID: "x", Target: Target{BuildID: "00"}}, []NamedData{{Name: n, Kind: KindObject}})
		if !errors.Is(err, ErrBadPatch) {
			t.Errorf("name %q accepted", n)
		}
	}
}

func TestReadFileTooBig(t *testing.T) {
	name := filepath.Join(t.TempDir(), "huge.hp")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	// A sparse file claiming a gigabyte: refused before it is read.
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := ReadFile(name); !errors.Is(err, ErrBadPatch) {
		t.Fatalf("got %v, want ErrBadPatch", err)
	}
}

// FuzzDecode: Decode never panics or hangs, and what it accepts re-encodes
// to the same bytes (nothing in a bundle escapes the manifest and hashes).
// The seed corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, p := range []*Patch{samplePatch(f), coldPatch(f), signedPatch(f)} {
		b, err := p.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(raw(2, "{}", ""))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			if !errors.Is(err, ErrBadPatch) {
				t.Fatalf("error not ErrBadPatch: %v", err)
			}
			return
		}
		for _, m := range p.Members {
			if checkName(m.Name) != nil || hashHex(p.Member(m.Name)) != m.SHA256 {
				t.Fatalf("accepted bad member %q", m.Name)
			}
		}
		again, err := p.Encode()
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, b) && p.Signature() != nil {
			t.Fatalf("signed bundle re-encodes differently")
		}
	})
}

// FuzzManifestKeys: whatever manifest JSON the strict decoder accepts, every
// key in it is one the manifest has, spelled exactly, with the value the
// decoder kept: re-encoding the decoded manifest gives back each key with a
// non-zero value.
func FuzzManifestKeys(f *testing.F) {
	for _, p := range []*Patch{samplePatch(f), coldPatch(f)} {
		b, err := p.manifestBytes()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"format":2,"ID":"x","id":"y"}`))
	f.Add([]byte(`{"functions":[{"name":"a","Name":"b"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Manifest
		if strictUnmarshal(b, &m) != nil {
			return
		}
		var rawv, again any
		if json.Unmarshal(b, &rawv) != nil {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		out, err := json.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatal(err)
		}
		if path, ok := subsetOf(rawv, again, ""); !ok {
			t.Fatalf("accepted %q: key %s is not what the decoder kept (re-encoded %s)", b, path, out)
		}
	})
}

// subsetOf reports whether every key of a with a non-zero value is in b with
// an equal value (recursively), and the first key that is not.
func subsetOf(a, b any, path string) (string, bool) {
	switch av := a.(type) {
	case map[string]any:
		bv, _ := b.(map[string]any)
		for k, v := range av {
			w, ok := bv[k]
			if !ok {
				if isZeroJSON(v) {
					continue
				}
				return path + "." + k, false
			}
			if p, ok := subsetOf(v, w, path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		bv, _ := b.([]any)
		if len(av) != len(bv) {
			if len(av) == 0 && b == nil {
				return "", true
			}
			return path, false
		}
		for i := range av {
			if p, ok := subsetOf(av[i], bv[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
				return p, false
			}
		}
		return "", true
	case nil:
		return "", true
	}
	if fmt.Sprint(a) != fmt.Sprint(b) {
		return path, false
	}
	return "", true
}

func isZeroJSON(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case float64:
		return x == 0
	case bool:
		return !x
	case []any:
		return len(x) == 0
	case map[string]any:
		for _, e := range x {
			if !isZeroJSON(e) {
				return false
			}
		}
		return true
	}
	return false
}

// TestLocatedValidation: run-pre located functions must carry their
// original bytes; located symbols must be well formed; a patch with them
// round-trips.
func TestLocatedValidation(t *testing.T) {
	orig := make([]byte, 16)
	good := Function{Name: "f", Object: "new.o", Addr: 0x1000, Size: 16, Orig: orig, Match: MatchRunPre}
	sym := Symbol{Name: "calls", File: "prog.c", Addr: 0x4010, Size: 8, Kind: SymbolVariable, Match: MatchRunPre}
	cases := []struct {
		name string
		fn   Function
		syms []Symbol
		ok   bool
	}{
		{"run-pre with bytes", good, []Symbol{sym}, true},
		{"run-pre without bytes", Function{Name: "f", Object: "new.o", Addr: 0x1000, Size: 16, Match: MatchRunPre}, nil, false},
		{"run-pre with short bytes", Function{Name: "f", Object: "new.o", Addr: 0x1000, Size: 16, Orig: orig[:8], Match: MatchRunPre}, nil, false},
		{"unknown match", Function{Name: "f", Object: "new.o", Addr: 0x1000, Size: 16, Match: "guess"}, nil, false},
		{"symbol of unknown kind", good, []Symbol{{Name: "x", Addr: 1, Kind: "thing", Match: MatchRunPre}}, false},
		{"symbol without match", good, []Symbol{{Name: "x", Addr: 1, Kind: SymbolFunction}}, false},
		{"symbol at 0", good, []Symbol{{Name: "x", Kind: SymbolFunction, Match: MatchRunPre}}, false},
		{"symbol twice", good, []Symbol{sym, sym}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := New(Manifest{ID: "hp-test", Target: Target{Path: "/bin/x", BuildID: "0a1b2c", Machine: "amd64"},
				Functions: []Function{c.fn}, Symbols: c.syms},
				[]NamedData{{Name: "new.o", Kind: KindObject, Data: []byte("\x7fELF object bytes")}})
			if !c.ok {
				if !errors.Is(err, ErrBadPatch) {
					t.Fatalf("got %v, want ErrBadPatch", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			enc, err := p.Encode()
			if err != nil {
				t.Fatal(err)
			}
			q, err := Decode(enc)
			if err != nil {
				t.Fatal(err)
			}
			if q.Functions[0].Match != MatchRunPre || len(q.Symbols) != 1 || q.Symbols[0] != sym {
				t.Fatalf("round trip: %+v %+v", q.Functions, q.Symbols)
			}
		})
	}
}
