// Package sign makes and checks the ed25519 signatures of patch bundles, and
// reads and writes the keys.
//
// Keys are stored as PEM like OpenSSL writes them (so `openssl pkey` can read
// them): the private key as "PRIVATE KEY" (PKCS #8, RFC 8410), the public key
// as "PUBLIC KEY" (PKIX SubjectPublicKeyInfo). A key is named by its key id,
// the first 16 hex digits of the sha256 of the raw 32-byte public key.
//
// A signature covers patchfile.Patch.SignedMessage: the manifest, which holds
// the sha256 of every member. Whether a bundle is trusted is decided only by
// the verifier's Keyring; the public key the bundle carries merely names the
// signer.
package sign

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/safefile"
)

// Algorithm is the only signature algorithm defined.
const Algorithm = "ed25519"

// DefaultTrustDir holds the public keys trusted by default (files ending in
// .pub).
const DefaultTrustDir = "/etc/hotpatch/trusted.d"

// Sentinel errors callers branch on.
var (
	// ErrUnsigned: the bundle carries no signature.
	ErrUnsigned = errors.New("patch is not signed")
	// ErrUntrusted: the bundle is signed by a key that is not trusted.
	ErrUntrusted = errors.New("patch is signed by an untrusted key")
	// ErrBadSignature: the signature does not verify (the bundle was
	// altered, or the signature block is malformed). It also matches
	// patchfile.ErrBadPatch.
	ErrBadSignature = fmt.Errorf("%w: bad signature", patchfile.ErrBadPatch)
	// ErrBadKey: a key file cannot be read as an ed25519 key.
	ErrBadKey = errors.New("invalid key file")
)

// KeyID names a public key: the first 16 hex digits of its sha256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// GenerateKey writes a new private key to path (mode 0600) and its public key
// to path+".pub" (mode 0644). It refuses to overwrite either file.
func GenerateKey(path string) (pubPath, keyID string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key: %w", err)
	}
	der, pubDER := marshalPrivateKey(priv), marshalPublicKey(pub)
	pubPath = path + ".pub"
	if err := writeNew(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		os.Remove(path)
		return "", "", err
	}
	return pubPath, KeyID(pub), nil
}

// writeNew creates name (never replacing an existing file) with mode perm,
// whatever the umask, and syncs it.
func writeNew(name string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm) // O_CREAT's mode is filtered by the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("write key %s: %w", name, err)
	}
	return nil
}

// MaxKeyFile bounds a key file (a PEM ed25519 key is about 120 bytes).
const MaxKeyFile = 16 << 10

func readPEM(path, typ string) ([]byte, error) {
	b, err := safefile.Read(path, MaxKeyFile, 0)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return decodePEM(b, path, typ)
}

func decodePEM(b []byte, path, typ string) ([]byte, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != typ {
		return nil, fmt.Errorf("%w: %s holds no PEM %q block", ErrBadKey, path, typ)
	}
	return blk.Bytes, nil
}

// LoadPrivateKey reads a private key written by GenerateKey (or by
// `openssl genpkey -algorithm ed25519`).
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	priv, err := parsePrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadKey, path, err)
	}
	return priv, nil
}

// LoadPublicKey reads a public key written by GenerateKey (or by
// `openssl pkey -pubout`).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	pub, err := parsePublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadKey, path, err)
	}
	return pub, nil
}

// TrustedKey is a key of a Keyring and where it came from.
type TrustedKey struct {
	ID     string            `json:"key_id"`
	Source string            `json:"source"`
	Key    ed25519.PublicKey `json:"-"`
}

// Keyring is the set of trusted public keys.
type Keyring struct {
	keys map[string]TrustedKey
	// Warnings name the keys and directories LoadKeyring ignored because
	// they were not safe to trust (see LoadKeyring).
	Warnings []string
}

// Len is the number of trusted keys.
func (r *Keyring) Len() int { return len(r.keys) }

// Keys lists the trusted keys by id.
func (r *Keyring) Keys() []TrustedKey {
	var ks []TrustedKey
	for _, k := range r.keys {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].ID < ks[j].ID })
	return ks
}

// Add trusts pub, read from source.
func (r *Keyring) Add(pub ed25519.PublicKey, source string) {
	if r.keys == nil {
		r.keys = map[string]TrustedKey{}
	}
	id := KeyID(pub)
	if _, ok := r.keys[id]; !ok {
		r.keys[id] = TrustedKey{ID: id, Source: source, Key: pub}
	}
}

// LoadKeyring trusts the public keys in files (each must be a small regular
// file holding a valid key) and the files ending in ".pub" in dirs.
//
// A directory is used only when it and every directory above it are owned by
// root (or the user running hotpatch) and not writable by group or others,
// and each key in it only when it is such a regular file too (sshd's
// StrictModes): anyone who can write there could make hotpatch trust their
// key. What fails these checks is ignored and named in Keyring.Warnings. A
// missing directory holds no keys; a key in it that cannot be parsed is an
// error, so that a typo is not silently ignored.
func LoadKeyring(files []string, dirs ...string) (*Keyring, error) {
	r := &Keyring{}
	for _, f := range files {
		pub, err := LoadPublicKey(f)
		if err != nil {
			return nil, fmt.Errorf("trusted key: %w", err)
		}
		r.Add(pub, f)
	}
	for _, d := range dirs {
		if err := r.loadDir(d); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// loadDir adds the keys of one trusted directory (see LoadKeyring).
func (r *Keyring) loadDir(dir string) error {
	d, err := safefile.TrustedDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, safefile.ErrInsecure):
		r.Warnings = append(r.Warnings, fmt.Sprintf("ignoring trusted keys in %s: %v", dir, err))
		return nil
	case err != nil:
		return fmt.Errorf("trusted keys: %w", err)
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("trusted keys: %w", err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".pub") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		pub, err := loadTrustedKey(d, e.Name(), path)
		if errors.Is(err, safefile.ErrInsecure) || errors.Is(err, safefile.ErrNotRegular) || errors.Is(err, safefile.ErrTooLarge) {
			r.Warnings = append(r.Warnings, fmt.Sprintf("ignoring trusted key %v", err))
			continue
		}
		if err != nil {
			return fmt.Errorf("trusted key: %w", err)
		}
		r.Add(pub, path)
	}
	return nil
}

// loadTrustedKey reads name in the directory d without following a symbolic
// link, and only if it is a small regular file that passes safefile.Trusted.
func loadTrustedKey(d *os.File, name, path string) (ed25519.PublicKey, error) {
	f, st, err := safefile.OpenAt(d, name, MaxKeyFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := safefile.Trusted(path, st); err != nil {
		return nil, err
	}
	b, err := safefile.ReadAll(f, MaxKeyFile)
	if err != nil {
		return nil, err
	}
	der, err := decodePEM(b, path, "PUBLIC KEY")
	if err != nil {
		return nil, err
	}
	pub, err := parsePublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrBadKey, path, err)
	}
	return pub, nil
}

// Sign signs p with priv (replacing any earlier signature).
func Sign(p *patchfile.Patch, priv ed25519.PrivateKey) error {
	if err := p.SetSignature(nil); err != nil {
		return err
	}
	msg, err := p.SignedMessage()
	if err != nil {
		return err
	}
	pub := priv.Public().(ed25519.PublicKey)
	return p.SetSignature(&patchfile.Signature{Algorithm: Algorithm, KeyID: KeyID(pub),
		PublicKey: append([]byte(nil), pub...), Value: ed25519.Sign(priv, msg)})
}

// Verify checks p's signature against the trusted keys and returns the key
// that signed it. Errors: ErrUnsigned, ErrUntrusted (naming the key id), and
// ErrBadSignature when the signature does not verify with the trusted key
// it names.
func Verify(p *patchfile.Patch, ring *Keyring) (*TrustedKey, error) {
	s := p.Signature()
	if s == nil {
		return nil, fmt.Errorf("%w: patch %s", ErrUnsigned, p.ID)
	}
	if s.Algorithm != Algorithm {
		return nil, fmt.Errorf("%w: algorithm %q (want %s)", ErrBadSignature, s.Algorithm, Algorithm)
	}
	if len(s.PublicKey) != ed25519.PublicKeySize || len(s.Value) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: malformed key or signature", ErrBadSignature)
	}
	if KeyID(s.PublicKey) != s.KeyID {
		return nil, fmt.Errorf("%w: key id %s does not match the key", ErrBadSignature, s.KeyID)
	}
	var tk TrustedKey
	ok := false
	if ring != nil {
		tk, ok = ring.keys[s.KeyID]
	}
	if !ok || !tk.Key.Equal(ed25519.PublicKey(s.PublicKey)) {
		n := 0
		if ring != nil {
			n = ring.Len()
		}
		return nil, fmt.Errorf("%w: patch %s is signed by key %s, which is not among the %d trusted key(s)", ErrUntrusted, p.ID, s.KeyID, n)
	}
	msg, err := p.SignedMessage()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if !ed25519.Verify(tk.Key, msg, s.Value) {
		return nil, fmt.Errorf("%w: patch %s: signature by key %s does not verify (altered bundle)", ErrBadSignature, p.ID, s.KeyID)
	}
	return &tk, nil
}
