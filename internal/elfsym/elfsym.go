// Package elfsym reads what hotpatch needs from the ELF files of a target
// process (its executable and shared libraries): symbols from .symtab and
// .dynsym with their GNU symbol versions and the STT_FILE they belong to, the
// GNU build-id, the dynamic relocations that tell which GOT slot the running
// process uses for a symbol (to resolve IFUNCs and TLS offsets), PT_TLS, and
// the DWARF compile units with their producer strings.
//
// It is pure parsing: it never touches a process. The files it reads are
// untrusted (they come from the target's file system or from its memory
// mappings), so every entry point recovers panics from debug/elf and from this
// package into errors wrapping ErrMalformed, and reads are bounded by what the
// file actually holds.
package elfsym

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrNoBuildID: the file has no NT_GNU_BUILD_ID note.
	ErrNoBuildID = errors.New("no GNU build-id")
	// ErrNotFound: no symbol matches.
	ErrNotFound = errors.New("symbol not found")
	// ErrAmbiguous: several symbols match and the caller must disambiguate
	// (for example by STT_FILE with LookupLocal).
	ErrAmbiguous = errors.New("symbol is ambiguous")
	// ErrMalformed: the file is not a well-formed ELF file (or uses a layout
	// this package does not handle).
	ErrMalformed = errors.New("malformed ELF file")
	// ErrNoData: the address is not backed by bytes in the file (SHT_NOBITS
	// such as .bss, or not in any section or PT_LOAD segment).
	ErrNoData = errors.New("address has no data in the file")
)

// File is an ELF file opened for symbol lookup. It keeps the io.ReaderAt it was
// opened from; Close closes that reader if it is an io.Closer.
type File struct {
	r io.ReaderAt
	f *elf.File

	hashOnce sync.Once // LookupDynamic's tables, read on first use
	dh       *dynHash
	dhErr    error
}

// guard turns a panic in the deferring function into an error wrapping
// ErrMalformed. debug/elf is not hardened against every hostile input, and
// neither is arithmetic on attacker-controlled header fields, so every exported
// entry point defers it.
func guard(err *error, op string) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%s: %w: panic: %v", op, ErrMalformed, r)
	}
}

// Open parses the ELF file read from r and checks that its headers are
// consistent. It never panics on hostile input.
func Open(r io.ReaderAt) (_ *File, err error) {
	defer guard(&err, "open ELF")
	ef, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("open ELF: %w: %w", ErrMalformed, err)
	}
	if ef.Class != elf.ELFCLASS32 && ef.Class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("open ELF: %w: class %v", ErrMalformed, ef.Class)
	}
	if ef.ByteOrder == nil {
		return nil, fmt.Errorf("open ELF: %w: no byte order", ErrMalformed)
	}
	for i, p := range ef.Progs {
		if p.Filesz > p.Memsz && p.Type == elf.PT_LOAD {
			return nil, fmt.Errorf("open ELF: %w: PT_LOAD %d has filesz %#x > memsz %#x", ErrMalformed, i, p.Filesz, p.Memsz)
		}
		if p.Off+p.Filesz < p.Off || p.Vaddr+p.Memsz < p.Vaddr {
			return nil, fmt.Errorf("open ELF: %w: program header %d overflows", ErrMalformed, i)
		}
	}
	return &File{r: r, f: ef}, nil
}

// Close closes the underlying reader if it is an io.Closer.
func (f *File) Close() error {
	if c, ok := f.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// ELF returns the underlying debug/elf file. Its methods are not protected
// against panics on hostile input.
func (f *File) ELF() *elf.File { return f.f }

// Machine is e_machine.
func (f *File) Machine() elf.Machine { return f.f.Machine }

// Type is e_type.
func (f *File) Type() elf.Type { return f.f.Type }

// ptrSize is the size of an address in this file's class.
func (f *File) ptrSize() int {
	if f.f.Class == elf.ELFCLASS32 {
		return 4
	}
	return 8
}

// maxRead bounds single reads driven by header fields (a hostile header may
// claim exabytes). Real sections hotpatch reads are far smaller.
const maxRead = 1 << 30

// readAt reads exactly n bytes at off, in chunks so that a hostile size does
// not allocate more memory than the file really holds.
func (f *File) readAt(off, n uint64) ([]byte, error) {
	if n > maxRead || off > 1<<62 {
		return nil, fmt.Errorf("%w: read of %#x bytes at %#x", ErrMalformed, n, off)
	}
	const chunk = 1 << 20
	var out []byte
	if n <= chunk {
		out = make([]byte, 0, n)
	}
	for uint64(len(out)) < n {
		c := min(n-uint64(len(out)), chunk)
		buf := make([]byte, c)
		k, err := f.r.ReadAt(buf, int64(off)+int64(len(out)))
		if uint64(k) < c {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read %#x bytes at file offset %#x: %w", n, off, err)
		}
		out = append(out, buf...)
	}
	return out, nil
}

// BuildID returns the NT_GNU_BUILD_ID descriptor, looked for in the PT_NOTE
// segments and then in the SHT_NOTE sections (a file whose program headers
// were damaged or a relocatable object). It returns ErrNoBuildID when there is
// none.
func (f *File) BuildID() (_ []byte, err error) {
	defer guard(&err, "read build-id")
	for _, p := range f.f.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz == 0 {
			continue
		}
		data, err := f.readAt(p.Off, p.Filesz)
		if err != nil {
			return nil, fmt.Errorf("read PT_NOTE: %w", err)
		}
		if id, ok := f.findBuildID(data, p.Align); ok {
			return id, nil
		}
	}
	for _, s := range f.f.Sections {
		if s.Type != elf.SHT_NOTE || s.Size == 0 {
			continue
		}
		data, err := f.readAt(s.Offset, s.Size)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", s.Name, err)
		}
		if id, ok := f.findBuildID(data, s.Addralign); ok {
			return id, nil
		}
	}
	return nil, ErrNoBuildID
}

// findBuildID walks the notes in data (Elf_Nhdr: namesz, descsz, type, then
// name and descriptor each padded to the note alignment, 4 bytes for classic
// notes and 8 for segments with p_align 8, see the gABI "Note Section" and
// ld.so's _dl_process_pt_note).
func (f *File) findBuildID(data []byte, align uint64) ([]byte, bool) {
	a := uint64(4)
	if align == 8 {
		a = 8
	}
	pad := func(x uint64) uint64 { return (x + a - 1) &^ (a - 1) }
	bo := f.f.ByteOrder
	for len(data) >= 12 {
		namesz := uint64(bo.Uint32(data[0:]))
		descsz := uint64(bo.Uint32(data[4:]))
		typ := bo.Uint32(data[8:])
		rest := data[12:]
		nameEnd := pad(namesz)
		if nameEnd > uint64(len(rest)) {
			return nil, false
		}
		name := rest[:namesz]
		descEnd := nameEnd + pad(descsz)
		if nameEnd+descsz > uint64(len(rest)) {
			return nil, false
		}
		desc := rest[nameEnd : nameEnd+descsz]
		if typ == ntGNUBuildID && bytes.Equal(name, []byte("GNU\x00")) && len(desc) > 0 {
			return bytes.Clone(desc), true
		}
		if descEnd > uint64(len(rest)) {
			return nil, false
		}
		data = rest[descEnd:]
	}
	return nil, false
}

// TLS returns the size in memory and the alignment of the PT_TLS segment.
func (f *File) TLS() (memsz, align uint64, ok bool) {
	for _, p := range f.f.Progs {
		if p.Type == elf.PT_TLS {
			return p.Memsz, p.Align, true
		}
	}
	return 0, 0, false
}

// allocSectionAt returns the SHF_ALLOC section containing vaddr. TLS NOBITS
// sections (.tbss) are skipped: their addresses are a template offset that
// overlaps the sections that follow and occupy no memory of their own.
func (f *File) allocSectionAt(vaddr uint64) *elf.Section {
	for _, s := range f.f.Sections {
		if s.Flags&elf.SHF_ALLOC == 0 || s.Size == 0 {
			continue
		}
		if s.Type == elf.SHT_NOBITS && s.Flags&elf.SHF_TLS != 0 {
			continue
		}
		if vaddr >= s.Addr && vaddr-s.Addr < s.Size {
			return s
		}
	}
	return nil
}

// ReadVirt returns the n bytes at link-time virtual address vaddr, from the
// section (or, without section headers, the PT_LOAD segment) holding them. It
// returns an error wrapping ErrNoData for SHT_NOBITS sections and for
// addresses no section or segment covers.
func (f *File) ReadVirt(vaddr uint64, n int) (_ []byte, err error) {
	defer guard(&err, "read virtual address")
	if n < 0 {
		return nil, fmt.Errorf("read %#x: negative length %d", vaddr, n)
	}
	if s := f.allocSectionAt(vaddr); s != nil {
		if s.Type == elf.SHT_NOBITS {
			return nil, fmt.Errorf("read %#x: %w: in SHT_NOBITS section %s", vaddr, ErrNoData, s.Name)
		}
		if uint64(n) > s.Size-(vaddr-s.Addr) {
			return nil, fmt.Errorf("read %#x+%d: %w: past the end of section %s", vaddr, n, ErrNoData, s.Name)
		}
		b, err := f.readAt(s.Offset+(vaddr-s.Addr), uint64(n))
		if err != nil {
			return nil, fmt.Errorf("read %#x in %s: %w", vaddr, s.Name, err)
		}
		return b, nil
	}
	return f.readVirtSeg(vaddr, uint64(n))
}

// readVirtSeg reads link-time virtual addresses through the PT_LOAD segments,
// which is what the loader maps and all that remains when section headers are
// stripped.
func (f *File) readVirtSeg(vaddr, n uint64) ([]byte, error) {
	for _, p := range f.f.Progs {
		if p.Type != elf.PT_LOAD || vaddr < p.Vaddr || vaddr-p.Vaddr >= p.Memsz {
			continue
		}
		off := vaddr - p.Vaddr
		if off >= p.Filesz || n > p.Filesz-off {
			return nil, fmt.Errorf("read %#x+%d: %w: beyond p_filesz of PT_LOAD at %#x", vaddr, n, ErrNoData, p.Vaddr)
		}
		b, err := f.readAt(p.Off+off, n)
		if err != nil {
			return nil, fmt.Errorf("read %#x: %w", vaddr, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("read %#x: %w: no section or PT_LOAD covers it", vaddr, ErrNoData)
}

// SectionEnd returns the end address (Addr+Size) of the SHF_ALLOC section
// containing vaddr; without section headers, the end of the file-backed part
// of the PT_LOAD segment containing it.
func (f *File) SectionEnd(vaddr uint64) (uint64, bool) {
	if s := f.allocSectionAt(vaddr); s != nil {
		return s.Addr + s.Size, true
	}
	if len(f.f.Sections) > 1 {
		return 0, false
	}
	for _, p := range f.f.Progs {
		if p.Type == elf.PT_LOAD && vaddr >= p.Vaddr && vaddr-p.Vaddr < p.Filesz {
			return p.Vaddr + p.Filesz, true
		}
	}
	return 0, false
}

// InPLT reports whether addr lies in one of the file's .plt* sections
// (.plt, .plt.got, .plt.sec): a branch there goes through a PLT stub, and
// the stubs' FDEs describe no function.
func (f *File) InPLT(addr uint64) bool {
	for _, s := range f.f.Sections {
		if strings.HasPrefix(s.Name, ".plt") && addr >= s.Addr && addr-s.Addr < s.Size {
			return true
		}
	}
	return false
}

// getUint reads a field of size bytes (4 or 8) in the file's byte order.
func getUint(bo binary.ByteOrder, b []byte, size int) uint64 {
	if size == 4 {
		return uint64(bo.Uint32(b))
	}
	return bo.Uint64(b)
}

// ntGNUBuildID is NT_GNU_BUILD_ID (<elf.h>), the type of the note holding the
// build-id in the "GNU" namespace.
const ntGNUBuildID = 3
