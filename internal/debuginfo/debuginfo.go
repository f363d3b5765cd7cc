// Package debuginfo finds and verifies the file that holds an ELF file's
// symbols, the way gdb, perf and delve find separate debug information:
//
//  1. the file itself, when it still has a .symtab;
//  2. <root>/usr/lib/debug/.build-id/xx/rest.debug, from the file's GNU
//     build-id (xx its first byte in hex, rest the others) — Debian's
//     -dbgsym and Fedora's -debuginfo packages install these;
//  3. the name in the file's .gnu_debuglink section, looked for in the
//     file's directory, in its .debug/ subdirectory and in
//     <root>/usr/lib/debug/<the file's directory>/, the file's contents
//     checked against the CRC the section carries;
//  4. the debuginfod client cache: $DEBUGINFOD_CACHE_PATH/<build-id>/debuginfo,
//     else $XDG_CACHE_HOME/debuginfod_client/…, else
//     ~/.cache/debuginfod_client/… (libdebuginfod's order).
//
// An explicit debug file (build --debug-file) replaces the search. A debug
// file found or given must be the file's: same build-id (and, through
// .gnu_debuglink, same CRC); a mismatched one is refused with both ids named,
// never used and never silently skipped, since symbols from another build put
// jumps at the wrong addresses. No file found is not an error: Find then
// reports SourceNone, and the caller has the dynamic symbols only.
//
// Debug files are untrusted input: they are opened with internal/safefile
// (regular files only, size bounded) and parsed with internal/elfsym, whose
// entry points recover panics.
package debuginfo

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/hotpatch/hotpatch/internal/elfsym"
	"github.com/hotpatch/hotpatch/internal/safefile"
)

// ErrMismatch: a debug file does not belong to the file (other build-id or
// .gnu_debuglink CRC).
var ErrMismatch = errors.New("debug file does not match")

// Source says where the symbols came from.
type Source string

// Sources, in search order.
const (
	SourceFile       Source = "file"       // the file's own .symtab
	SourceExplicit   Source = "explicit"   // --debug-file
	SourceBuildID    Source = "build-id"   // /usr/lib/debug/.build-id/
	SourceDebuglink  Source = "debuglink"  // .gnu_debuglink
	SourceDebuginfod Source = "debuginfod" // the debuginfod client cache
	SourceNone       Source = "none"       // .dynsym only
)

// maxDebugFile bounds the size of a debug file (a hostile path may name
// /dev/zero or a growing file; safefile refuses what is not regular).
const maxDebugFile = 16 << 30

// Options configure the search. The zero value searches the host.
type Options struct {
	// Root prefixes /usr/lib/debug (default "/"), for tests and for
	// looking into another root file system.
	Root string
	// DebuginfodCache is the debuginfod client cache directory; default
	// $DEBUGINFOD_CACHE_PATH, $XDG_CACHE_HOME/debuginfod_client or
	// ~/.cache/debuginfod_client.
	DebuginfodCache string
	// File is an explicit debug file; it replaces the search.
	File string
}

func (o Options) root() string {
	if o.Root == "" {
		return "/"
	}
	return o.Root
}

func (o Options) cache() string {
	if o.DebuginfodCache != "" {
		return o.DebuginfodCache
	}
	if p := os.Getenv("DEBUGINFOD_CACHE_PATH"); p != "" {
		return p
	}
	if p := os.Getenv("XDG_CACHE_HOME"); p != "" {
		return filepath.Join(p, "debuginfod_client")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".cache", "debuginfod_client")
	}
	return ""
}

// Found is the result of Find.
type Found struct {
	Source Source
	// Path is the file that gives the symbols: the file itself for
	// SourceFile and SourceNone, the debug file otherwise.
	Path string
	// Debug is the opened debug file (nil for SourceFile and SourceNone);
	// Close closes it.
	Debug *elfsym.File
}

// Close closes the debug file, if any.
func (f *Found) Close() {
	if f != nil && f.Debug != nil {
		f.Debug.Close()
	}
}

// Find finds the file holding the symbols of ef, the ELF file at path (path
// is used for the .gnu_debuglink directories and in messages).
func Find(path string, ef *elfsym.File, opt Options) (*Found, error) {
	bid, _ := ef.BuildID()
	if opt.File != "" {
		// Without a build-id only the .gnu_debuglink CRC ties a debug file
		// to its file; with neither, nothing does, and an explicit file is
		// refused rather than trusted blindly.
		var crc *uint32
		if len(bid) == 0 {
			_, c, ok := Debuglink(ef)
			if !ok {
				return nil, fmt.Errorf("--debug-file: %w: %s has neither a build-id nor a .gnu_debuglink CRC to check %s against", ErrMismatch, path, opt.File)
			}
			crc = &c
		}
		d, err := open(opt.File, path, bid, crc)
		if err != nil {
			return nil, fmt.Errorf("--debug-file: %w", err)
		}
		return &Found{Source: SourceExplicit, Path: opt.File, Debug: d}, nil
	}
	if ef.HasSymtab() {
		return &Found{Source: SourceFile, Path: path}, nil
	}
	for _, c := range candidates(path, ef, bid, opt) {
		d, err := open(c.path, path, bid, c.crc)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, errNoSymtab) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &Found{Source: c.src, Path: c.path, Debug: d}, nil
	}
	return &Found{Source: SourceNone, Path: path}, nil
}

// Symbols is Find and the symbol table it gives: the file's .dynsym with the
// .symtab of the file that has it.
func Symbols(path string, ef *elfsym.File, opt Options) (*elfsym.Table, *Found, error) {
	fd, err := Find(path, ef, opt)
	if err != nil {
		return nil, nil, err
	}
	var t *elfsym.Table
	if fd.Debug != nil {
		t, err = ef.SymbolsWithDebug(fd.Debug)
	} else {
		t, err = ef.Symbols()
	}
	if err != nil {
		fd.Close()
		return nil, nil, fmt.Errorf("symbols of %s from %s: %w", path, fd.Path, err)
	}
	return t, fd, nil
}

type candidate struct {
	src  Source
	path string
	crc  *uint32 // .gnu_debuglink's CRC, checked when set
}

// candidates lists the places to look, in order.
func candidates(path string, ef *elfsym.File, bid []byte, opt Options) []candidate {
	var out []candidate
	debugDir := filepath.Join(opt.root(), "usr", "lib", "debug")
	if len(bid) >= 2 {
		h := hex.EncodeToString(bid)
		out = append(out, candidate{SourceBuildID, filepath.Join(debugDir, ".build-id", h[:2], h[2:]+".debug"), nil})
	}
	if name, crc, ok := Debuglink(ef); ok {
		dir := filepath.Dir(path)
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
		for _, d := range []string{dir, filepath.Join(dir, ".debug"), filepath.Join(debugDir, dir)} {
			out = append(out, candidate{SourceDebuglink, filepath.Join(d, name), &crc})
		}
	}
	if c := opt.cache(); c != "" && len(bid) > 0 {
		out = append(out, candidate{SourceDebuginfod, filepath.Join(c, hex.EncodeToString(bid), "debuginfo"), nil})
	}
	return out
}

var errNoSymtab = errors.New("debug file has no .symtab")

// open opens and verifies a debug file for the file at target (build-id
// bid): the build-ids must be equal (a target without one relies on the
// CRC), the CRC must match when wantCRC is set, and the debug file must
// have symbols.
func open(path, target string, bid []byte, wantCRC *uint32) (*elfsym.File, error) {
	fh, _, err := safefile.Open(path, maxDebugFile, 0)
	if err != nil {
		return nil, err
	}
	d, err := elfsym.Open(fh)
	if err != nil {
		fh.Close()
		return nil, fmt.Errorf("debug file %s: %w", path, err)
	}
	fail := func(err error) (*elfsym.File, error) { d.Close(); return nil, err }
	dbid, _ := d.BuildID()
	if len(bid) > 0 && !bytes.Equal(bid, dbid) {
		return fail(fmt.Errorf("%w: %s has build-id %s but %s has build-id %s: it is the debug file of another build",
			ErrMismatch, path, idString(dbid), target, idString(bid)))
	}
	if wantCRC != nil {
		crc, err := fileCRC(fh)
		if err != nil {
			return fail(fmt.Errorf("debug file %s: %w", path, err))
		}
		if crc != *wantCRC {
			return fail(fmt.Errorf("%w: %s has CRC %08x but %s's .gnu_debuglink wants %08x (build-ids: debug file %s, %s %s): it is the debug file of another build",
				ErrMismatch, path, crc, target, *wantCRC, idString(dbid), target, idString(bid)))
		}
	}
	if !d.HasSymtab() {
		return fail(fmt.Errorf("%s: %w", path, errNoSymtab))
	}
	return d, nil
}

func idString(id []byte) string {
	if len(id) == 0 {
		return "(none)"
	}
	return hex.EncodeToString(id)
}

// fileCRC is the CRC .gnu_debuglink carries: CRC-32 of the whole debug
// file with the IEEE 802.3 polynomial (reflected 0xedb88320), initial value
// 0 — gdb's gnu_debuglink_crc32 (gdb/gdb_bfd, formerly gdb/utils.c) and
// bfd_calc_gnu_debuglink_crc32 (bfd/opncls.c), which is zlib's crc32() and
// Go's crc32.IEEE.
func fileCRC(r io.ReaderAt) (uint32, error) {
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, maxDebugFile)); err != nil {
		return 0, fmt.Errorf("compute CRC: %w", err)
	}
	return h.Sum32(), nil
}

// Debuglink returns the debug file name and CRC of ef's .gnu_debuglink.
func Debuglink(ef *elfsym.File) (name string, crc uint32, ok bool) {
	defer func() {
		if recover() != nil {
			name, crc, ok = "", 0, false
		}
	}()
	s := ef.ELF().Section(".gnu_debuglink")
	if s == nil || s.Size > 4096 {
		return "", 0, false
	}
	data, err := s.Data()
	if err != nil {
		return "", 0, false
	}
	return ParseDebuglink(data, ef.ELF().ByteOrder)
}

// ParseDebuglink parses the contents of a .gnu_debuglink section: the file
// name, NUL-terminated, padded with NULs to a multiple of 4, then the CRC
// as a 4-byte word in the file's byte order (gdb manual, "Debugging
// Information in Separate Files"). The name must be a plain file name: a
// name with a slash would leave the searched directories.
func ParseDebuglink(data []byte, bo binary.ByteOrder) (name string, crc uint32, ok bool) {
	n := bytes.IndexByte(data, 0)
	if n <= 0 {
		return "", 0, false
	}
	off := (n + 1 + 3) &^ 3
	if off+4 > len(data) {
		return "", 0, false
	}
	name = string(data[:n])
	if name == "." || name == ".." || bytes.ContainsRune(data[:n], '/') {
		return "", 0, false
	}
	return name, bo.Uint32(data[off:]), true
}
