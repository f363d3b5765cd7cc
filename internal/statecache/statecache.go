// Package statecache keeps what hotpatch can reuse between runs (where the
// instruction sequences injected calls borrow sit in a mapped library, say)
// in small files of the user's private state directory. A cache entry is
// untrusted input: another version of hotpatch, a crash in the middle of a
// write or a hand edit may have left anything there. Load checks the
// entry's header, length and SHA-256 and returns nothing on any mismatch;
// the caller validates the content against the truth (the process, the
// file) before using it, and recomputes silently when it does not match.
package statecache

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/hotpatch/hotpatch/internal/safefile"
)

// MaxSize bounds an entry's payload.
const MaxSize = 1 << 20

// Dir is a cache directory: the user's state directory (safefile.PrivateDir
// rules: owned by the user, mode 0700). "" disables the cache.
type Dir string

const magic = "hotpatch-cache 1 "

// Load returns the payload of entry name, or false when there is none or it
// is not intact.
func (d Dir) Load(name string) ([]byte, bool) {
	if d == "" {
		return nil, false
	}
	dir, err := safefile.PrivateDir(string(d))
	if err != nil {
		return nil, false
	}
	defer dir.Close()
	f, _, err := safefile.OpenAt(dir, name, MaxSize+128)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	b, err := safefile.ReadAll(f, MaxSize+128)
	if err != nil {
		return nil, false
	}
	p, err := Decode(b)
	return p, err == nil
}

// Store writes entry name atomically (a temporary file renamed over it), so
// that a reader sees the old entry or the new one. Failures are ignored: a
// cache that cannot be written costs only the time it would have saved.
func (d Dir) Store(name string, payload []byte) {
	if d == "" || len(payload) > MaxSize {
		return
	}
	dir, err := safefile.PrivateDir(string(d))
	if err != nil {
		return
	}
	defer dir.Close()
	tmp := fmt.Sprintf(".%s.%d.tmp", name, os.Getpid())
	unix.Unlinkat(int(dir.Fd()), tmp, 0)
	f, err := safefile.CreateAt(dir, tmp, 0o600)
	if err != nil {
		return
	}
	_, werr := f.Write(Encode(payload))
	if cerr := f.Close(); werr != nil || cerr != nil {
		unix.Unlinkat(int(dir.Fd()), tmp, 0)
		return
	}
	if unix.Renameat(int(dir.Fd()), tmp, int(dir.Fd()), name) != nil {
		unix.Unlinkat(int(dir.Fd()), tmp, 0)
	}
}

// Encode frames payload: "hotpatch-cache 1 SHA256 LEN\n" then the payload.
func Encode(payload []byte) []byte {
	sum := sha256.Sum256(payload)
	h := fmt.Sprintf("%s%s %d\n", magic, hex.EncodeToString(sum[:]), len(payload))
	return append([]byte(h), payload...)
}

// Decode checks the framing of an entry and returns its payload.
func Decode(b []byte) (p []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("cache entry: panic: %v", r)
		}
	}()
	nl := bytes.IndexByte(b, '\n')
	if nl < 0 || !bytes.HasPrefix(b, []byte(magic)) {
		return nil, fmt.Errorf("cache entry: no header")
	}
	f := bytes.Fields(b[len(magic):nl])
	if len(f) != 2 || len(f[0]) != 2*sha256.Size {
		return nil, fmt.Errorf("cache entry: bad header")
	}
	n, err := strconv.Atoi(string(f[1]))
	payload := b[nl+1:]
	if err != nil || n != len(payload) {
		return nil, fmt.Errorf("cache entry: length %q, have %d bytes", f[1], len(payload))
	}
	sum := sha256.Sum256(payload)
	if hex.EncodeToString(sum[:]) != string(f[0]) {
		return nil, fmt.Errorf("cache entry: checksum mismatch")
	}
	return payload, nil
}
