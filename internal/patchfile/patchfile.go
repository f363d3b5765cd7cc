// Package patchfile reads and writes hotpatch patch files.
//
// A patch file is one self-describing file:
//
//	offset size
//	0      8    magic "HPBUNDLE"
//	8      4    format version (little endian, currently 1)
//	12     4    length M of the manifest
//	16     M    manifest (JSON, see Manifest)
//	16+M   ...  the members, concatenated in manifest order
//
// The manifest names the target by build-id, lists the functions the patch
// replaces and holds the size and sha256 of every member; Read verifies every
// member against it before returning anything. Patch files come from outside:
// Read treats them as hostile (bounded sizes, no panics, safe member names).
// docs/format.md documents the format for other tools.
package patchfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
)

// Magic starts every patch file.
const Magic = "HPBUNDLE"

// FormatVersion is the version this package writes and reads.
const FormatVersion = 1

// Limits on what Read accepts.
const (
	MaxManifest  = 1 << 20
	MaxMembers   = 256
	MaxTotalSize = 512 << 20
)

// ErrBadPatch: the file is not a valid patch (truncated, corrupt, wrong
// version, a member whose hash does not match, ...).
var ErrBadPatch = errors.New("invalid patch file")

// Target identifies the file a patch applies to.
type Target struct {
	// Path is where the file was when the patch was built (informational:
	// processes are matched by build-id).
	Path    string `json:"path"`
	BuildID string `json:"build_id"`
	Machine string `json:"machine"`
}

// Function is one function the patch replaces (or adds).
type Function struct {
	Name string `json:"name"`
	// File is the source file of a local (static) function, from the
	// target's STT_FILE symbols; empty for globals.
	File  string `json:"file,omitempty"`
	Local bool   `json:"local,omitempty"`
	// Object is the member holding the new code.
	Object string `json:"object"`
	// Addr and Size are the old function's link-time address and size in the
	// target; zero for a function the patch adds.
	Addr uint64 `json:"addr,omitempty"`
	Size uint64 `json:"size,omitempty"`
	// New is true for a function that does not exist in the target.
	New bool `json:"new,omitempty"`
	// Orig holds the old function's bytes as built (run-pre check), with
	// OrigMask marking (0xff) the bytes that are compared; may be empty.
	Orig     []byte `json:"orig,omitempty"`
	OrigMask []byte `json:"orig_mask,omitempty"`
}

// Member is a file carried in the patch.
type Member struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Kind says what the member is: "object" (a hot object to load).
	Kind string `json:"kind"`
}

// Manifest describes a patch.
type Manifest struct {
	Format      int        `json:"format"`
	ID          string     `json:"id"`
	Description string     `json:"description,omitempty"`
	Target      Target     `json:"target"`
	Functions   []Function `json:"functions"`
	Members     []Member   `json:"members"`
}

// Patch is a read, verified patch file.
type Patch struct {
	Manifest
	data map[string][]byte
}

// Member returns the contents of a member, nil if there is none of that name.
func (p *Patch) Member(name string) []byte { return p.data[name] }

// Objects returns the names of the hot objects, in manifest order.
func (p *Patch) Objects() []string {
	var names []string
	for _, m := range p.Members {
		if m.Kind == "object" {
			names = append(names, m.Name)
		}
	}
	return names
}

// New assembles a patch from a manifest (its Members are filled in here) and
// member contents given in order.
func New(m Manifest, members []NamedData) (*Patch, error) {
	m.Format = FormatVersion
	m.Members = nil
	p := &Patch{data: map[string][]byte{}}
	for _, nd := range members {
		if err := checkName(nd.Name); err != nil {
			return nil, err
		}
		if _, dup := p.data[nd.Name]; dup {
			return nil, fmt.Errorf("duplicate member %q", nd.Name)
		}
		sum := sha256.Sum256(nd.Data)
		m.Members = append(m.Members, Member{Name: nd.Name, Size: int64(len(nd.Data)),
			SHA256: hex.EncodeToString(sum[:]), Kind: nd.Kind})
		p.data[nd.Name] = nd.Data
	}
	if err := validate(&m); err != nil {
		return nil, err
	}
	p.Manifest = m
	return p, nil
}

// NamedData is a member's name, kind and contents.
type NamedData struct {
	Name string
	Kind string
	Data []byte
}

// Encode serialises the patch.
func (p *Patch) Encode() ([]byte, error) {
	man, err := json.MarshalIndent(&p.Manifest, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteString(Magic)
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[0:], FormatVersion)
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(man)))
	buf.Write(hdr[:])
	buf.Write(man)
	for _, m := range p.Members {
		buf.Write(p.data[m.Name])
	}
	return buf.Bytes(), nil
}

// WriteFile writes the patch to path atomically (temporary file and rename).
func (p *Patch) WriteFile(name string) error {
	b, err := p.Encode()
	if err != nil {
		return err
	}
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, name); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// ReadFile reads and verifies a patch file.
func ReadFile(name string) (*Patch, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open patch: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("open patch: %w", err)
	}
	if st.Size() > MaxTotalSize+MaxManifest+16 {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than any patch may be", ErrBadPatch, name, st.Size())
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	p, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// Decode parses and verifies a patch held in memory.
func Decode(b []byte) (p *Patch, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("%w: %v", ErrBadPatch, r)
		}
	}()
	if len(b) < 16 {
		return nil, fmt.Errorf("%w: truncated header (%d bytes)", ErrBadPatch, len(b))
	}
	if string(b[:8]) != Magic {
		return nil, fmt.Errorf("%w: not a hotpatch patch (bad magic)", ErrBadPatch)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, this hotpatch reads version %d", ErrBadPatch, v, FormatVersion)
	}
	mlen := uint64(binary.LittleEndian.Uint32(b[12:]))
	if mlen == 0 || mlen > MaxManifest {
		return nil, fmt.Errorf("%w: manifest length %d out of bounds", ErrBadPatch, mlen)
	}
	if uint64(len(b)-16) < mlen {
		return nil, fmt.Errorf("%w: truncated manifest (%d of %d bytes)", ErrBadPatch, len(b)-16, mlen)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b[16 : 16+mlen]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadPatch, err)
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("%w: manifest format %d, this hotpatch reads %d", ErrBadPatch, m.Format, FormatVersion)
	}
	if err := validate(&m); err != nil {
		return nil, err
	}
	off := 16 + mlen
	p = &Patch{Manifest: m, data: map[string][]byte{}}
	for _, mem := range m.Members {
		end := off + uint64(mem.Size)
		if end > uint64(len(b)) || end < off {
			return nil, fmt.Errorf("%w: member %q truncated (needs %d bytes, %d left)", ErrBadPatch, mem.Name, mem.Size, uint64(len(b))-off)
		}
		data := b[off:end]
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != mem.SHA256 {
			return nil, fmt.Errorf("%w: member %q: sha256 mismatch (corrupt patch)", ErrBadPatch, mem.Name)
		}
		p.data[mem.Name] = data
		off = end
	}
	if off != uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d unexpected bytes after the last member", ErrBadPatch, uint64(len(b))-off)
	}
	return p, nil
}

func checkName(n string) error {
	if n == "" || len(n) > 255 || strings.HasPrefix(n, "/") || strings.Contains(n, "\\") ||
		path.Clean(n) != n || n == ".." || strings.HasPrefix(n, "../") || strings.Contains(n, "/../") ||
		strings.ContainsAny(n, "\x00\n") {
		return fmt.Errorf("%w: unsafe member name %q", ErrBadPatch, n)
	}
	return nil
}

func validate(m *Manifest) error {
	if m.ID == "" || len(m.ID) > 64 || strings.ContainsAny(m.ID, "/\x00 \n") {
		return fmt.Errorf("%w: bad patch id %q", ErrBadPatch, m.ID)
	}
	if _, err := hex.DecodeString(m.Target.BuildID); err != nil || m.Target.BuildID == "" {
		return fmt.Errorf("%w: bad target build-id %q", ErrBadPatch, m.Target.BuildID)
	}
	if len(m.Members) > MaxMembers {
		return fmt.Errorf("%w: %d members (at most %d)", ErrBadPatch, len(m.Members), MaxMembers)
	}
	var total int64
	names := map[string]bool{}
	for _, mem := range m.Members {
		if err := checkName(mem.Name); err != nil {
			return err
		}
		if names[mem.Name] {
			return fmt.Errorf("%w: duplicate member %q", ErrBadPatch, mem.Name)
		}
		names[mem.Name] = true
		if mem.Size < 0 || mem.Size > MaxTotalSize {
			return fmt.Errorf("%w: member %q claims %d bytes", ErrBadPatch, mem.Name, mem.Size)
		}
		total += mem.Size
		if total > MaxTotalSize {
			return fmt.Errorf("%w: members add up to more than %d bytes", ErrBadPatch, MaxTotalSize)
		}
		if len(mem.SHA256) != 64 {
			return fmt.Errorf("%w: member %q: bad sha256", ErrBadPatch, mem.Name)
		}
	}
	for _, f := range m.Functions {
		if f.Name == "" {
			return fmt.Errorf("%w: function without a name", ErrBadPatch)
		}
		if !names[f.Object] {
			return fmt.Errorf("%w: function %s refers to missing member %q", ErrBadPatch, f.Name, f.Object)
		}
		if len(f.OrigMask) != 0 && len(f.OrigMask) != len(f.Orig) {
			return fmt.Errorf("%w: function %s: mask and bytes differ in length", ErrBadPatch, f.Name)
		}
	}
	return nil
}
