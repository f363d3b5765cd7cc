// Package record defines the record hotpatch keeps inside a patched process.
//
// Every applied patch lives in one region of the target's address space,
// mapped from a memfd named "hotpatch:<patch id>" so that it is recognisable in
// /proc/PID/maps (as "/memfd:hotpatch:<id> (deleted)"). The region starts with
// a header that describes the patch: which functions were redirected, the
// bytes that were there before, and where they now jump. `hotpatch status`
// and `hotpatch revert` read this header back from the process itself, so
// they are right even after the tool crashed or from another shell.
//
// Header layout (little endian):
//
//	offset size
//	0      8    magic "HOTPATCH"
//	8      4    format version (1)
//	12     4    state (see State); updated in place with one 4-byte write
//	16     4    length N of the JSON body
//	20     4    reserved, zero
//	24     8    size of the whole region in bytes
//	32     N    JSON body (Record)
//
// The record is read from target memory, which anything in that process could
// have scribbled on: Decode treats it as untrusted input.
package record

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Magic starts every patch region.
const Magic = "HOTPATCH"

// Version is the header format version this package writes and reads.
const Version = 1

// Fixed header geometry.
const (
	FixedSize   = 32
	StateOffset = 12
	// MaxBody bounds the JSON body accepted by Decode.
	MaxBody = 1 << 20
)

// NamePrefix is the memfd name prefix of patch regions; the maps line reads
// "/memfd:" + NamePrefix + id + " (deleted)".
const NamePrefix = "hotpatch:"

// ErrBadRecord: the bytes are not a valid record.
var ErrBadRecord = errors.New("invalid hotpatch record")

// State is the lifecycle state of a patch in one process.
type State uint32

// States. The order of writes during apply is: region mapped and filled with
// state Applying, redirects written, state Applied. Revert writes Reverting,
// restores the original bytes, then unmaps the region or marks it Reverted
// when a thread may still return into it.
const (
	StateApplying  State = 1
	StateApplied   State = 2
	StateReverting State = 3
	StateReverted  State = 4
)

func (s State) String() string {
	switch s {
	case StateApplying:
		return "applying"
	case StateApplied:
		return "applied"
	case StateReverting:
		return "reverting"
	case StateReverted:
		return "reverted"
	}
	return fmt.Sprintf("state(%d)", uint32(s))
}

// Redirect records one redirected function.
type Redirect struct {
	Func string `json:"func"`
	// Addr is where the jump was written.
	Addr uint64 `json:"addr"`
	// Entry is the function's entry address (Addr may be after an endbr64).
	Entry uint64 `json:"entry"`
	// New is the address of the replacement function.
	New uint64 `json:"new"`
	// Orig holds the bytes at Addr before the patch; Jump the bytes written.
	Orig []byte `json:"orig"`
	Jump []byte `json:"jump"`
	Kind string `json:"kind"`
	// For a patch-ready function (-fpatchable-function-entry), Addr/Orig/Jump
	// are the short jump at the entry and Pad* the long jump written into the
	// padding above it; Order is the byte order of the entry writes.
	PadAddr uint64 `json:"pad_addr,omitempty"`
	PadOrig []byte `json:"pad_orig,omitempty"`
	PadJump []byte `json:"pad_jump,omitempty"`
	Order   []int  `json:"order,omitempty"`
	// For a slot redirect (a function with no room for the long jump at its
	// entry), Addr/Orig/Jump are the 2-byte jump at the entry and Slot* the
	// long jump written into the dead padding it reaches. Apply writes the
	// slot first, revert restores it last.
	SlotAddr uint64 `json:"slot_addr,omitempty"`
	SlotOrig []byte `json:"slot_orig,omitempty"`
	SlotJump []byte `json:"slot_jump,omitempty"`
}

// HasSlot reports whether the redirect goes through a slot in padding.
func (r Redirect) HasSlot() bool { return len(r.SlotJump) > 0 }

// Padded reports whether the redirect goes through patch-ready padding.
func (r Redirect) Padded() bool { return len(r.PadJump) > 0 }

// Record is the JSON body of the header.
type Record struct {
	ID          string     `json:"id"`
	Digest      string     `json:"digest,omitempty"`
	Description string     `json:"description,omitempty"`
	Target      string     `json:"target"`
	BuildID     string     `json:"build_id"`
	AppliedAt   int64      `json:"applied_at"`
	Base        uint64     `json:"base"`
	Size        uint64     `json:"size"`
	TextStart   uint64     `json:"text_start"`
	TextEnd     uint64     `json:"text_end"`
	Redirects   []Redirect `json:"redirects"`
}

// Encode returns the header bytes for r in state s.
func Encode(r *Record, s State) ([]byte, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	if len(body) > MaxBody {
		return nil, fmt.Errorf("encode record: body of %d bytes exceeds %d", len(body), MaxBody)
	}
	b := make([]byte, FixedSize+len(body))
	copy(b, Magic)
	binary.LittleEndian.PutUint32(b[8:], Version)
	binary.LittleEndian.PutUint32(b[StateOffset:], uint32(s))
	binary.LittleEndian.PutUint32(b[16:], uint32(len(body)))
	binary.LittleEndian.PutUint64(b[24:], r.Size)
	copy(b[FixedSize:], body)
	return b, nil
}

// StateBytes encodes s for the in-place update at StateOffset.
func StateBytes(s State) []byte {
	b := make([]byte, 4)
	binary.LittleEndian.PutUint32(b, uint32(s))
	return b
}

// ParseFixed checks the fixed part of a header and returns the state and the
// length of the JSON body that follows it.
func ParseFixed(b []byte) (State, int, error) {
	if len(b) < FixedSize {
		return 0, 0, fmt.Errorf("%w: header truncated (%d bytes)", ErrBadRecord, len(b))
	}
	if !bytes.Equal(b[:8], []byte(Magic)) {
		return 0, 0, fmt.Errorf("%w: bad magic %q", ErrBadRecord, b[:8])
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != Version {
		return 0, 0, fmt.Errorf("%w: format version %d, this hotpatch reads %d", ErrBadRecord, v, Version)
	}
	s := State(binary.LittleEndian.Uint32(b[StateOffset:]))
	if s < StateApplying || s > StateReverted {
		return 0, 0, fmt.Errorf("%w: unknown state %d", ErrBadRecord, uint32(s))
	}
	n := binary.LittleEndian.Uint32(b[16:])
	if n == 0 || n > MaxBody {
		return 0, 0, fmt.Errorf("%w: body length %d", ErrBadRecord, n)
	}
	return s, int(n), nil
}

// Decode parses a whole header (fixed part and body).
func Decode(b []byte) (rec *Record, s State, err error) {
	defer func() {
		if p := recover(); p != nil {
			rec, err = nil, fmt.Errorf("%w: %v", ErrBadRecord, p)
		}
	}()
	s, n, err := ParseFixed(b)
	if err != nil {
		return nil, 0, err
	}
	if len(b) < FixedSize+n {
		return nil, 0, fmt.Errorf("%w: body truncated (%d of %d bytes)", ErrBadRecord, len(b)-FixedSize, n)
	}
	var r Record
	if err := json.Unmarshal(b[FixedSize:FixedSize+n], &r); err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if r.ID == "" || len(r.ID) > 64 || strings.ContainsAny(r.ID, "/ ") || !Printable(r.ID) {
		return nil, 0, fmt.Errorf("%w: bad patch id %q", ErrBadRecord, r.ID)
	}
	for _, f := range []struct{ name, v string }{{"target", r.Target}, {"build-id", r.BuildID}, {"digest", r.Digest}} {
		if !Printable(f.v) || len(f.v) > 4096 {
			return nil, 0, fmt.Errorf("%w: %s %q is not printable text", ErrBadRecord, f.name, f.v)
		}
	}
	if !utf8.ValidString(r.Description) {
		return nil, 0, fmt.Errorf("%w: description is not UTF-8", ErrBadRecord)
	}
	for i, rd := range r.Redirects {
		if rd.Func == "" || !Printable(rd.Func) || !Printable(rd.Kind) {
			return nil, 0, fmt.Errorf("%w: redirect %d: function %q or kind %q is not printable text", ErrBadRecord, i, rd.Func, rd.Kind)
		}
		if len(rd.PadOrig) != len(rd.PadJump) || len(rd.PadJump) > 64 {
			return nil, 0, fmt.Errorf("%w: redirect %d (%s): bad padding bytes", ErrBadRecord, i, rd.Func)
		}
		if len(rd.SlotOrig) != len(rd.SlotJump) || len(rd.SlotJump) > 64 || (rd.HasSlot() && rd.Padded()) {
			return nil, 0, fmt.Errorf("%w: redirect %d (%s): bad slot bytes", ErrBadRecord, i, rd.Func)
		}
		for _, o := range rd.Order {
			if o < 0 || o >= len(rd.Jump) || len(rd.Order) != len(rd.Jump) {
				return nil, 0, fmt.Errorf("%w: redirect %d (%s): bad write order", ErrBadRecord, i, rd.Func)
			}
		}
		if len(rd.Orig) != len(rd.Jump) || len(rd.Jump) == 0 || len(rd.Jump) > 64 {
			return nil, 0, fmt.Errorf("%w: redirect %d (%s): %d original bytes for a %d-byte jump",
				ErrBadRecord, i, rd.Func, len(rd.Orig), len(rd.Jump))
		}
	}
	if sz := binary.LittleEndian.Uint64(b[24:]); sz != r.Size {
		return nil, 0, fmt.Errorf("%w: region size %d in header, %d in body", ErrBadRecord, sz, r.Size)
	}
	return &r, s, nil
}

// Printable reports whether s is valid UTF-8 without control characters
// (C0, DEL, C1), format characters (bidirectional overrides, zero-width
// marks) or line and paragraph separators: text that prints as itself on a
// terminal. Strings of a record are read from a target's memory, which its
// owner controls.
func Printable(s string) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return false
			}
		}
		if !PrintableRune(r) {
			return false
		}
	}
	return true
}

// PrintableRune is Printable for one rune.
func PrintableRune(r rune) bool {
	return r >= 0x20 && r != 0x7f && !(r >= 0x80 && r <= 0x9f) &&
		!unicode.Is(unicode.Cf, r) && !unicode.Is(unicode.Zl, r) && !unicode.Is(unicode.Zp, r)
}
