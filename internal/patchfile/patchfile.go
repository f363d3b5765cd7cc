// Package patchfile reads and writes hotpatch patch files.
//
// A patch file (a "bundle") is one self-describing file:
//
//	offset   size
//	0        8    magic "HPBUNDLE"
//	8        4    format version (little endian, currently 2)
//	12       4    length M of the manifest
//	16       4    length S of the signature block (0: unsigned)
//	20       M    manifest (JSON, see Manifest)
//	20+M     S    signature block (JSON, see Signature)
//	20+M+S   ...  the members, concatenated in manifest order
//
// The manifest names the target by path, build-id and sha256, lists the
// functions the patch replaces and holds the size and sha256 of every member:
// the hot objects and, optionally, the coldpatch (the fixed file that replaces
// the target on disk). Decode verifies every member against it before
// returning anything. The signature covers the manifest bytes exactly as
// stored (see SignedMessage), and through the member hashes every member;
// checking it against trusted keys is the job of package sign, so that
// callers which build patches in memory (tests, the engine) need no keys.
//
// Patch files come from outside: Decode treats them as hostile (bounded
// sizes, no panics, safe member names). docs/format.md documents the format
// for other tools.
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
	"path/filepath"
	"reflect"
	"strings"

	"github.com/hotpatch/hotpatch/internal/safefile"
)

// Magic starts every patch file.
const Magic = "HPBUNDLE"

// FormatVersion is the version this package writes and reads. Version 1 (no
// signature block, no coldpatch) was never released and is refused.
const FormatVersion = 2

// HeaderSize is the size of the fixed header before the manifest.
const HeaderSize = 20

// Limits on what Decode accepts: a bundle claiming more is refused before
// anything is allocated for it.
const (
	MaxManifest  = 1 << 20
	MaxSignature = 4 << 10
	MaxMembers   = 256
	MaxTotalSize = 512 << 20
)

// Member kinds.
const (
	KindObject = "object" // a hot object, loaded into running processes
	KindCold   = "cold"   // the fixed file that replaces the target on disk
)

// signaturePrefix separates bundle signatures from any other use of a key
// (domain separation): the signed message is this prefix followed by the
// manifest bytes.
const signaturePrefix = "hotpatch bundle signature v2\x00"

// ErrBadPatch: the file is not a valid patch (truncated, corrupt, wrong
// version, a member whose hash does not match, ...).
var ErrBadPatch = errors.New("invalid patch file")

// ErrSignatureStale: the manifest was changed after the patch was signed.
var ErrSignatureStale = errors.New("manifest changed after signing")

// Target identifies the file a patch applies to.
type Target struct {
	// Path is where the file was when the patch was built. Processes are
	// matched by build-id; the coldpatch replaces the file at Path.
	Path    string `json:"path"`
	BuildID string `json:"build_id"`
	Machine string `json:"machine"`
	// SHA256 is the hash of the original file (required with a coldpatch:
	// only a file with this content is replaced).
	SHA256 string `json:"sha256,omitempty"`
}

// Cold describes the coldpatch: the fixed file that replaces Target.Path.
type Cold struct {
	// Member is the member holding the fixed file (kind "cold").
	Member string `json:"member"`
	// SHA256 is the fixed file's hash (the same as its member's).
	SHA256 string `json:"sha256"`
	// BuildID is the fixed file's build-id, if it has one.
	BuildID string `json:"build_id,omitempty"`
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
	// Match says how Addr was found when the target has no symbol for the
	// function: MatchRunPre (its code matched Orig at an .eh_frame
	// function boundary, see docs/patch-generation.md). Such a function
	// must carry Orig, which apply checks. Empty: the target's symbols.
	Match string `json:"match,omitempty"`
}

// How an address of a target without symbols of its own was found.
const (
	// MatchRunPre: by run-pre matching (no symbol anywhere).
	MatchRunPre = "run-pre"
	// MatchDebugFile: from the target's separate debug file at build time
	// (the host that applies the patch need not have it).
	MatchDebugFile = "debug-file"
)

func knownMatch(m string) bool { return m == MatchRunPre || m == MatchDebugFile }

// Symbol is a function or data object of the target that the patch's code
// refers to and the target has no symbol for, located by the build
// (Match): the engine binds the patch's references to it.
type Symbol struct {
	Name string `json:"name"`
	// File is the source file of a static, as the patch's STT_FILE says.
	File string `json:"file,omitempty"`
	Addr uint64 `json:"addr"`
	Size uint64 `json:"size,omitempty"`
	// Kind is SymbolFunction or SymbolVariable.
	Kind  string `json:"kind"`
	Match string `json:"match"`
}

// Symbol kinds.
const (
	SymbolFunction = "function"
	SymbolVariable = "variable"
)

// maxSymbols bounds Manifest.Symbols.
const maxSymbols = 1 << 16

// Member is a file carried in the patch.
type Member struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Kind says what the member is: "object" (a hot object to load) or
	// "cold" (the fixed file).
	Kind string `json:"kind"`
}

// Manifest describes a patch.
type Manifest struct {
	Format      int        `json:"format"`
	ID          string     `json:"id"`
	Description string     `json:"description,omitempty"`
	Target      Target     `json:"target"`
	Functions   []Function `json:"functions"`
	// Symbols are target symbols located by the build (stripped targets
	// without debug info); absent otherwise, which keeps such patches
	// readable by hotpatch versions before it.
	Symbols []Symbol `json:"symbols,omitempty"`
	Cold    *Cold    `json:"cold,omitempty"`
	Members []Member `json:"members"`
}

// Signature is the signature block of a signed bundle.
type Signature struct {
	// Algorithm is "ed25519" (the only one defined).
	Algorithm string `json:"algorithm"`
	// KeyID names the key: the first 16 hex digits of the sha256 of the raw
	// public key.
	KeyID string `json:"key_id"`
	// PublicKey is the signer's raw public key. It only says who claims to
	// have signed: trust comes from the verifier's own list of keys.
	PublicKey []byte `json:"public_key"`
	// Value is the signature of SignedMessage.
	Value []byte `json:"signature"`
}

// Patch is a read, verified patch file.
type Patch struct {
	Manifest
	data map[string][]byte
	// raw is the manifest exactly as signed (set by Decode of a signed
	// bundle and by SetSignature); sig is the signature block, nil when
	// unsigned.
	raw []byte
	sig *Signature
}

// Member returns the contents of a member, nil if there is none of that name.
func (p *Patch) Member(name string) []byte { return p.data[name] }

// Objects returns the names of the hot objects, in manifest order.
func (p *Patch) Objects() []string {
	var names []string
	for _, m := range p.Members {
		if m.Kind == KindObject {
			names = append(names, m.Name)
		}
	}
	return names
}

// ColdData returns the fixed file carried by the patch, nil if it has none.
func (p *Patch) ColdData() []byte {
	if p.Cold == nil {
		return nil
	}
	return p.data[p.Cold.Member]
}

// Signature returns the patch's signature block, nil if it is unsigned. It is
// not checked here: see package sign.
func (p *Patch) Signature() *Signature { return p.sig }

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
			return nil, fmt.Errorf("%w: duplicate member %q", ErrBadPatch, nd.Name)
		}
		m.Members = append(m.Members, Member{Name: nd.Name, Size: int64(len(nd.Data)),
			SHA256: hashHex(nd.Data), Kind: nd.Kind})
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

// AddCold adds the coldpatch: fixed, the file that replaces the target on
// disk, and origSHA256, the hash of the original target file it may replace.
// It drops any signature (the manifest changes): sign after adding.
func (p *Patch) AddCold(fixed []byte, origSHA256, fixedBuildID string) error {
	if p.Cold != nil {
		return fmt.Errorf("%w: patch %s already has a coldpatch", ErrBadPatch, p.ID)
	}
	name := "cold/" + path.Base(filepath.ToSlash(p.Target.Path))
	if p.Target.Path == "" || checkName(name) != nil {
		name = "cold/target"
	}
	if _, dup := p.data[name]; dup {
		return fmt.Errorf("%w: duplicate member %q", ErrBadPatch, name)
	}
	m := p.Manifest
	m.Members = append(append([]Member(nil), p.Members...),
		Member{Name: name, Size: int64(len(fixed)), SHA256: hashHex(fixed), Kind: KindCold})
	m.Cold = &Cold{Member: name, SHA256: hashHex(fixed), BuildID: fixedBuildID}
	m.Target.SHA256 = origSHA256
	if err := validate(&m); err != nil {
		return err
	}
	p.Manifest = m
	p.data[name] = fixed
	p.raw, p.sig = nil, nil
	return nil
}

// SignedMessage returns the bytes a signature covers: a fixed prefix
// (domain separation) and the manifest as it is (or will be) stored. The
// manifest holds the sha256 of every member, so this covers the whole patch.
func (p *Patch) SignedMessage() ([]byte, error) {
	man, err := p.manifestBytes()
	if err != nil {
		return nil, err
	}
	return append([]byte(signaturePrefix), man...), nil
}

// SetSignature attaches a signature made over SignedMessage (see package
// sign), or removes it when s is nil. The manifest must not change
// afterwards: Encode refuses with ErrSignatureStale.
func (p *Patch) SetSignature(s *Signature) error {
	if s == nil {
		p.raw, p.sig = nil, nil
		return nil
	}
	man, err := p.manifestBytes()
	if err != nil {
		return err
	}
	if _, err := encodeSig(s); err != nil {
		return err
	}
	p.raw, p.sig = man, s
	return nil
}

// manifestBytes returns the stored manifest: the signed bytes of a signed
// patch, else a fresh encoding of the manifest.
func (p *Patch) manifestBytes() ([]byte, error) {
	cur, err := json.MarshalIndent(&p.Manifest, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if p.raw == nil {
		return cur, nil
	}
	// The signed bytes may be formatted differently (another writer), so
	// compare canonical forms: decode them and encode them like cur.
	var m Manifest
	if err := json.Unmarshal(p.raw, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSignatureStale, err)
	}
	again, err := json.MarshalIndent(&m, "", "  ")
	if err != nil || !bytes.Equal(again, cur) {
		return nil, fmt.Errorf("%w: patch %s (sign it again)", ErrSignatureStale, p.ID)
	}
	return p.raw, nil
}

func encodeSig(s *Signature) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode signature: %w", err)
	}
	if len(b) > MaxSignature {
		return nil, fmt.Errorf("%w: signature block of %d bytes (at most %d)", ErrBadPatch, len(b), MaxSignature)
	}
	return b, nil
}

// Encode serialises the patch.
func (p *Patch) Encode() ([]byte, error) {
	if err := validate(&p.Manifest); err != nil {
		return nil, err
	}
	man, err := p.manifestBytes()
	if err != nil {
		return nil, err
	}
	var sig []byte
	if p.sig != nil {
		if sig, err = encodeSig(p.sig); err != nil {
			return nil, err
		}
	}
	var buf bytes.Buffer
	buf.WriteString(Magic)
	var hdr [12]byte
	binary.LittleEndian.PutUint32(hdr[0:], FormatVersion)
	binary.LittleEndian.PutUint32(hdr[4:], uint32(len(man)))
	binary.LittleEndian.PutUint32(hdr[8:], uint32(len(sig)))
	buf.Write(hdr[:])
	buf.Write(man)
	buf.Write(sig)
	for _, m := range p.Members {
		buf.Write(p.data[m.Name])
	}
	return buf.Bytes(), nil
}

// WriteFile writes the patch to name atomically: a temporary file in the same
// directory, fsync, rename.
func (p *Patch) WriteFile(name string) error {
	b, err := p.Encode()
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// ReadFile reads and verifies a patch file (member hashes; not the
// signature, see package sign).
//
// The file must be a regular file (a FIFO or a device is refused at once,
// without blocking or reading it) of at most the largest size a patch may
// have; see package safefile.
func ReadFile(name string) (*Patch, error) {
	const max = MaxTotalSize + MaxManifest + MaxSignature + HeaderSize
	b, err := safefile.Read(name, max, 0)
	switch {
	case errors.Is(err, safefile.ErrNotRegular), errors.Is(err, safefile.ErrTooLarge):
		return nil, fmt.Errorf("%w: %v", ErrBadPatch, err)
	case err != nil:
		return nil, fmt.Errorf("open patch: %w", err)
	}
	p, err := Decode(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return p, nil
}

// Decode parses and verifies a patch held in memory: header, manifest,
// signature block syntax, and the size and sha256 of every member. The
// members returned alias b.
func Decode(b []byte) (p *Patch, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("%w: %v", ErrBadPatch, r)
		}
	}()
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("%w: truncated header (%d bytes)", ErrBadPatch, len(b))
	}
	if string(b[:8]) != Magic {
		return nil, fmt.Errorf("%w: not a hotpatch patch (bad magic)", ErrBadPatch)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, this hotpatch reads version %d (rebuild the patch)", ErrBadPatch, v, FormatVersion)
	}
	mlen := uint64(binary.LittleEndian.Uint32(b[12:]))
	slen := uint64(binary.LittleEndian.Uint32(b[16:]))
	if mlen == 0 || mlen > MaxManifest {
		return nil, fmt.Errorf("%w: manifest length %d out of bounds", ErrBadPatch, mlen)
	}
	if slen > MaxSignature {
		return nil, fmt.Errorf("%w: signature length %d out of bounds", ErrBadPatch, slen)
	}
	rest := uint64(len(b) - HeaderSize)
	if rest < mlen+slen {
		return nil, fmt.Errorf("%w: truncated manifest or signature (%d of %d bytes)", ErrBadPatch, rest, mlen+slen)
	}
	raw := b[HeaderSize : HeaderSize+mlen]
	var m Manifest
	if err := strictUnmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %v", ErrBadPatch, err)
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("%w: manifest format %d, this hotpatch reads %d", ErrBadPatch, m.Format, FormatVersion)
	}
	if err := validate(&m); err != nil {
		return nil, err
	}
	p = &Patch{Manifest: m, data: map[string][]byte{}}
	if slen > 0 {
		var s Signature
		if err := strictUnmarshal(b[HeaderSize+mlen:HeaderSize+mlen+slen], &s); err != nil {
			return nil, fmt.Errorf("%w: signature block: %v", ErrBadPatch, err)
		}
		p.sig, p.raw = &s, raw
	}
	// Check the total before hashing anything: validate bounded the claimed
	// sizes, this catches a bundle claiming more than it holds.
	off := HeaderSize + mlen + slen
	var total uint64
	for _, mem := range m.Members {
		total += uint64(mem.Size)
	}
	if total != uint64(len(b))-off {
		return nil, fmt.Errorf("%w: members need %d bytes, the file has %d after the manifest", ErrBadPatch, total, uint64(len(b))-off)
	}
	for _, mem := range m.Members {
		end := off + uint64(mem.Size)
		data := b[off:end]
		if hashHex(data) != mem.SHA256 {
			return nil, fmt.Errorf("%w: member %q: sha256 mismatch (corrupt patch)", ErrBadPatch, mem.Name)
		}
		p.data[mem.Name] = data
		off = end
	}
	return p, nil
}

// strictUnmarshal decodes one JSON value, refusing unknown fields, keys
// that are not spelled exactly as the fields are (see exactKeys), repeated
// keys and trailing data.
func strictUnmarshal(b []byte, v any) error {
	if err := exactKeys(b, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	// Nothing may follow, not even a stray closing bracket (which
	// dec.More does not see).
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
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
	if m.Target.SHA256 != "" && !isSHA256(m.Target.SHA256) {
		return fmt.Errorf("%w: bad target sha256 %q", ErrBadPatch, m.Target.SHA256)
	}
	if len(m.Members) > MaxMembers {
		return fmt.Errorf("%w: %d members (at most %d)", ErrBadPatch, len(m.Members), MaxMembers)
	}
	var total int64
	members := map[string]Member{}
	cold := 0
	for _, mem := range m.Members {
		if err := checkName(mem.Name); err != nil {
			return err
		}
		if _, dup := members[mem.Name]; dup {
			return fmt.Errorf("%w: duplicate member %q", ErrBadPatch, mem.Name)
		}
		members[mem.Name] = mem
		if mem.Size < 0 || mem.Size > MaxTotalSize {
			return fmt.Errorf("%w: member %q claims %d bytes", ErrBadPatch, mem.Name, mem.Size)
		}
		total += mem.Size
		if total > MaxTotalSize {
			return fmt.Errorf("%w: members add up to more than %d bytes", ErrBadPatch, MaxTotalSize)
		}
		if !isSHA256(mem.SHA256) {
			return fmt.Errorf("%w: member %q: bad sha256", ErrBadPatch, mem.Name)
		}
		switch mem.Kind {
		case KindObject:
		case KindCold:
			cold++
		default:
			return fmt.Errorf("%w: member %q of unknown kind %q", ErrBadPatch, mem.Name, mem.Kind)
		}
	}
	for _, f := range m.Functions {
		if f.Name == "" {
			return fmt.Errorf("%w: function without a name", ErrBadPatch)
		}
		if members[f.Object].Kind != KindObject {
			return fmt.Errorf("%w: function %s refers to missing object member %q", ErrBadPatch, f.Name, f.Object)
		}
		if len(f.OrigMask) != 0 && len(f.OrigMask) != len(f.Orig) {
			return fmt.Errorf("%w: function %s: mask and bytes differ in length", ErrBadPatch, f.Name)
		}
		switch f.Match {
		case "":
		case MatchRunPre, MatchDebugFile:
			if f.New || f.Size == 0 || uint64(len(f.Orig)) != f.Size {
				return fmt.Errorf("%w: function %s located by %s must carry its %d original bytes", ErrBadPatch, f.Name, f.Match, f.Size)
			}
		default:
			return fmt.Errorf("%w: function %s: unknown match %q", ErrBadPatch, f.Name, f.Match)
		}
	}
	if err := validateSymbols(m.Symbols); err != nil {
		return err
	}
	switch {
	case m.Cold == nil && cold > 0:
		return fmt.Errorf("%w: cold member without a coldpatch entry", ErrBadPatch)
	case m.Cold == nil:
	case cold != 1 || members[m.Cold.Member].Kind != KindCold:
		return fmt.Errorf("%w: coldpatch member %q missing or not the only cold member", ErrBadPatch, m.Cold.Member)
	case members[m.Cold.Member].SHA256 != m.Cold.SHA256:
		return fmt.Errorf("%w: coldpatch sha256 differs from its member's", ErrBadPatch)
	case !isSHA256(m.Target.SHA256):
		return fmt.Errorf("%w: coldpatch without the original file's sha256", ErrBadPatch)
	case m.Target.SHA256 == m.Cold.SHA256:
		return fmt.Errorf("%w: coldpatch identical to the original file", ErrBadPatch)
	case !filepath.IsAbs(m.Target.Path) || filepath.Clean(m.Target.Path) != m.Target.Path:
		return fmt.Errorf("%w: coldpatch target path %q is not a clean absolute path", ErrBadPatch, m.Target.Path)
	}
	if m.Cold != nil && m.Cold.BuildID != "" {
		if _, err := hex.DecodeString(m.Cold.BuildID); err != nil {
			return fmt.Errorf("%w: bad coldpatch build-id %q", ErrBadPatch, m.Cold.BuildID)
		}
	}
	return nil
}

func validateSymbols(syms []Symbol) error {
	if len(syms) > maxSymbols {
		return fmt.Errorf("%w: %d located symbols (at most %d)", ErrBadPatch, len(syms), maxSymbols)
	}
	seen := map[[2]string]bool{}
	for _, s := range syms {
		switch {
		case s.Name == "" || strings.ContainsRune(s.Name, 0):
			return fmt.Errorf("%w: located symbol without a name", ErrBadPatch)
		case s.Kind != SymbolFunction && s.Kind != SymbolVariable:
			return fmt.Errorf("%w: located symbol %s of unknown kind %q", ErrBadPatch, s.Name, s.Kind)
		case !knownMatch(s.Match):
			return fmt.Errorf("%w: located symbol %s: unknown match %q", ErrBadPatch, s.Name, s.Match)
		case s.Addr == 0 || s.Size > MaxTotalSize || s.Addr+s.Size < s.Addr:
			return fmt.Errorf("%w: located symbol %s: bad address %#x size %d", ErrBadPatch, s.Name, s.Addr, s.Size)
		case seen[[2]string{s.Name, s.File}]:
			return fmt.Errorf("%w: located symbol %s (%s) listed twice", ErrBadPatch, s.Name, s.File)
		}
		seen[[2]string{s.Name, s.File}] = true
	}
	return nil
}
