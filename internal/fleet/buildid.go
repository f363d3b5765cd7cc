package fleet

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/hotpatch/hotpatch/internal/elfsym"
)

// Sentinel errors of the build-id reader.
var (
	// ErrNotELF: the file does not start with the ELF magic.
	ErrNotELF = errors.New("not an ELF file")
	// ErrNoBuildID: the file is ELF but has no NT_GNU_BUILD_ID note.
	ErrNoBuildID = errors.New("no GNU build-id")
)

// Limits on what readBuildID reads from an untrusted file.
const (
	maxPhnum    = 4096     // program headers examined
	maxNoteSize = 64 << 10 // bytes of one PT_NOTE segment read
)

// ntGNUBuildID is NT_GNU_BUILD_ID (<elf.h>).
const ntGNUBuildID = 3

// readBuildID returns the hex NT_GNU_BUILD_ID of the ELF file r, reading only
// the ELF header, the program headers and the PT_NOTE segments: a few hundred
// bytes instead of the section headers and symbol tables a full parse reads.
// A file whose notes are not reachable through PT_NOTE (damaged program
// headers) falls back to the full parser in elfsym, so the answer is the one
// engine.Apply will compute. The file is not trusted: sizes are bounded and
// panics are recovered into errors.
func readBuildID(r io.ReaderAt) (id string, err error) {
	defer func() {
		if p := recover(); p != nil {
			id, err = "", fmt.Errorf("read build-id: panic: %v", p)
		}
	}()
	var ident [64]byte
	n, _ := r.ReadAt(ident[:], 0)
	if n < 16 || string(ident[:4]) != "\x7fELF" {
		return "", ErrNotELF
	}
	// e_ident[EI_CLASS] and e_ident[EI_DATA] (gABI "ELF Identification").
	var bo binary.ByteOrder
	switch ident[5] {
	case 1:
		bo = binary.LittleEndian
	case 2:
		bo = binary.BigEndian
	default:
		return "", fmt.Errorf("read build-id: bad EI_DATA %d", ident[5])
	}
	var phoff, phentsize, phnum uint64
	var is64 bool
	switch ident[4] {
	case 1: // ELFCLASS32: e_phoff at 28, e_phentsize at 42, e_phnum at 44
		if n < 52 {
			return "", fmt.Errorf("read build-id: short ELF header")
		}
		phoff = uint64(bo.Uint32(ident[28:]))
		phentsize, phnum = uint64(bo.Uint16(ident[42:])), uint64(bo.Uint16(ident[44:]))
	case 2: // ELFCLASS64: e_phoff at 32, e_phentsize at 54, e_phnum at 56
		if n < 64 {
			return "", fmt.Errorf("read build-id: short ELF header")
		}
		is64 = true
		phoff = bo.Uint64(ident[32:])
		phentsize, phnum = uint64(bo.Uint16(ident[54:])), uint64(bo.Uint16(ident[56:]))
	default:
		return "", fmt.Errorf("read build-id: bad EI_CLASS %d", ident[4])
	}
	minEnt := uint64(32)
	if is64 {
		minEnt = 56
	}
	if phentsize >= minEnt && phentsize <= 256 && phnum > 0 && phnum <= maxPhnum && phoff < 1<<40 {
		ph := make([]byte, phentsize*phnum)
		if _, err := r.ReadAt(ph, int64(phoff)); err == nil {
			for i := uint64(0); i < phnum; i++ {
				e := ph[i*phentsize:]
				var typ uint32
				var off, filesz, align uint64
				if is64 { // Elf64_Phdr: type, flags, offset, vaddr, paddr, filesz, memsz, align
					typ, off, filesz, align = bo.Uint32(e), bo.Uint64(e[8:]), bo.Uint64(e[32:]), bo.Uint64(e[48:])
				} else { // Elf32_Phdr: type, offset, vaddr, paddr, filesz, memsz, flags, align
					typ, off, filesz, align = bo.Uint32(e), uint64(bo.Uint32(e[4:])), uint64(bo.Uint32(e[16:])), uint64(bo.Uint32(e[28:]))
				}
				if typ != 4 || filesz == 0 || filesz > maxNoteSize || off > 1<<40 { // PT_NOTE
					continue
				}
				data := make([]byte, filesz)
				if _, err := r.ReadAt(data, int64(off)); err != nil {
					continue
				}
				if id, ok := findNote(data, align, bo); ok {
					return hex.EncodeToString(id), nil
				}
			}
		}
	}
	// Rare: no PT_NOTE holds it. Let the full parser look at the sections.
	f, err := elfsym.Open(r)
	if err != nil {
		return "", fmt.Errorf("read build-id: %w", err)
	}
	b, err := f.BuildID()
	if err != nil {
		if errors.Is(err, elfsym.ErrNoBuildID) {
			return "", ErrNoBuildID
		}
		return "", fmt.Errorf("read build-id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// findNote walks the notes in data for NT_GNU_BUILD_ID with name "GNU". Each
// note is Elf_Nhdr {namesz, descsz, type} (three 4-byte words in both ELF
// classes) followed by the name and the descriptor, each padded to the note
// alignment: 4 bytes, or 8 for segments with p_align 8 (gABI "Note Section";
// glibc elf/dl-load.c _dl_process_pt_note does the same).
func findNote(data []byte, align uint64, bo binary.ByteOrder) ([]byte, bool) {
	a := uint64(4)
	if align == 8 {
		a = 8
	}
	pad := func(x uint64) uint64 { return (x + a - 1) &^ (a - 1) }
	for len(data) >= 12 {
		namesz, descsz := uint64(bo.Uint32(data)), uint64(bo.Uint32(data[4:]))
		typ := bo.Uint32(data[8:])
		rest := data[12:]
		if pad(namesz) > uint64(len(rest)) || pad(namesz)+descsz > uint64(len(rest)) {
			return nil, false
		}
		desc := rest[pad(namesz) : pad(namesz)+descsz]
		if typ == ntGNUBuildID && bytes.Equal(rest[:namesz], []byte("GNU\x00")) && len(desc) > 0 {
			return desc, true
		}
		next := pad(namesz) + pad(descsz)
		if next > uint64(len(rest)) {
			return nil, false
		}
		data = rest[next:]
	}
	return nil, false
}
