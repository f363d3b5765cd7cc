package procmaps

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Module is an ELF file mapped into the process: the executable or a shared
// library (or any other ELF file the process mapped).
type Module struct {
	// Path is the path the file was mapped from (" (deleted)" removed).
	Path string
	// Deleted: the kernel reports the file as deleted from disk.
	Deleted bool
	Dev     string
	Inode   uint64
	// Mappings are the module's mappings in address order, including the
	// PROT_NONE gaps the dynamic linker reserves between segments.
	Mappings []Mapping
	// Start and End bound all of Mappings.
	Start, End uint64
	// Bias is the load bias: run-time address = link-time vaddr + Bias
	// (0 for a non-PIE executable).
	Bias uint64
	// IsExe: this is the main executable.
	IsExe bool
}

// MemReader reads len(b) bytes of the target's memory at addr.
type MemReader func(addr uint64, b []byte) error

// Contains reports whether addr lies in one of the module's mappings.
func (m *Module) Contains(addr uint64) bool {
	for _, mp := range m.Mappings {
		if mp.Contains(addr) {
			return true
		}
	}
	return false
}

// executable reports whether any of the module's mappings is executable.
func (m *Module) executable() bool {
	for _, mp := range m.Mappings {
		if mp.Executable() {
			return true
		}
	}
	return false
}

// Open opens the module's file as the process sees it. It first uses
// /proc/PID/map_files/START-END (proc(5)): that link refers to the very file
// that is mapped, even if the path was since deleted or replaced (for example
// by a package upgrade). Opening it needs CAP_SYS_ADMIN (CAP_CHECKPOINT_RESTORE
// since Linux 5.9). Failing that, it opens /proc/PID/root/PATH (the path in
// the target's mount namespace and chroot) and checks that the inode is the
// mapped one; a different inode yields ErrFileChanged.
func (m *Module) Open(pid int) (*os.File, error) {
	if len(m.Mappings) == 0 {
		return nil, fmt.Errorf("open module %s: no mappings", m.Path)
	}
	first := m.Mappings[0]
	mf := fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, first.Start, first.End)
	// Refuse anything but regular files before opening: opening a device
	// node (a mapped /dev/zero, a GPU render node) or a FIFO can have side
	// effects or block. stat(2) on the map_files link follows it to the
	// mapped file.
	st, err := os.Stat(mf)
	if err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("open module %s: %w (%v)", m.Path, ErrNotRegular, st.Mode().Type())
	}
	f, err := os.Open(mf)
	if err == nil {
		return f, nil
	}
	if m.Deleted {
		return nil, fmt.Errorf("open deleted module %s: %w", m.Path, err)
	}
	alt := fmt.Sprintf("/proc/%d/root%s", pid, m.Path)
	if st, err := os.Stat(alt); err == nil && !st.Mode().IsRegular() {
		return nil, fmt.Errorf("open module %s: %w (%v)", m.Path, ErrNotRegular, st.Mode().Type())
	}
	f, err2 := os.Open(alt)
	if err2 != nil {
		return nil, fmt.Errorf("open module %s: %w (and %w)", m.Path, err, err2)
	}
	var fst unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &fst); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", alt, err)
	}
	if fst.Ino != m.Inode {
		f.Close()
		return nil, fmt.Errorf("open module %s: %w: inode %d on disk, %d mapped (map_files: %w)", m.Path, ErrFileChanged, fst.Ino, m.Inode, err)
	}
	return f, nil
}

type fileKey struct {
	dev   string
	inode uint64
}

// Modules groups the file-backed mappings of maps into modules: the
// executable first, then the shared libraries in the dynamic linker's load
// order (the link_map list of r_debug, found through DT_DEBUG in the
// executable's PT_DYNAMIC, read with mem), then any other mapped ELF files in
// address order. When mem is nil or the list cannot be read (a static
// executable, a process that has not run its dynamic linker yet) the libraries
// follow in address order. Mapped files that are not ELF (locale archives,
// fonts, data files) are left out.
//
// A new module starts at every mapping of file offset 0, so a library loaded
// twice (dlmopen) gives two modules with their own biases. The bias comes from
// the file's PT_LOAD headers: the dynamic linker maps each segment at
// ALIGN_DOWN(p_vaddr, pagesize) + bias from file offset
// ALIGN_DOWN(p_offset, pagesize) (glibc elf/dl-map-segments.h).
func Modules(pid int, maps []Mapping, mem MemReader) ([]*Module, error) {
	sorted := append([]Mapping(nil), maps...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Start < sorted[j].Start })

	var mods []*Module
	open := map[fileKey]*Module{}
	for _, mp := range sorted {
		if !mp.FileBacked() {
			continue
		}
		k := fileKey{mp.Dev, mp.Inode}
		mod := open[k]
		if mod == nil || mp.Offset == 0 {
			mod = &Module{Path: mp.Path, Deleted: mp.Deleted, Dev: mp.Dev, Inode: mp.Inode, Start: mp.Start}
			open[k] = mod
			mods = append(mods, mod)
		}
		mod.Mappings = append(mod.Mappings, mp)
		mod.End = max(mod.End, mp.End)
	}

	var elfMods []*Module
	info := map[*Module]*elfInfo{}
	for _, mod := range mods {
		ei, err := mod.readELF(pid)
		if errors.Is(err, errNotELF) || errors.Is(err, ErrNotRegular) {
			continue
		}
		if err != nil {
			if !mod.executable() {
				continue // a data file we cannot open does not matter
			}
			if strings.HasPrefix(mod.Path, "/memfd:") && mod.Deleted {
				// A memfd (a patch region, JIT code) that only a privileged
				// caller may open through map_files: no file on disk to load
				// symbols from, and not the module a patch targets.
				continue
			}
			return nil, fmt.Errorf("module %s: %w", mod.Path, err)
		}
		bias, ok := ei.bias(mod.Mappings)
		if !ok {
			continue // mapped from an offset no PT_LOAD loads: not a loaded image
		}
		mod.Bias = bias
		info[mod] = ei
		elfMods = append(elfMods, mod)
	}

	exe := findExe(pid, elfMods)
	if exe == nil {
		return elfMods, nil
	}
	exe.IsExe = true
	ordered := []*Module{exe}
	placed := map[*Module]bool{exe: true}
	if mem != nil {
		for _, ld := range linkMapOrder(exe, info[exe], mem) {
			for _, mod := range elfMods {
				if !placed[mod] && mod.Contains(ld) {
					placed[mod] = true
					ordered = append(ordered, mod)
					break
				}
			}
		}
	}
	for _, mod := range elfMods {
		if !placed[mod] {
			ordered = append(ordered, mod)
		}
	}
	return ordered, nil
}

var errNotELF = errors.New("not an ELF file")

// elfInfo is what Modules needs from a module's file.
type elfInfo struct {
	class elf.Class
	bo    binary.ByteOrder
	progs []elf.ProgHeader
}

func (m *Module) readELF(pid int) (*elfInfo, error) {
	key, ok := m.fileIdentity(pid)
	if !ok {
		return m.readELFFile(pid)
	}
	if ei, ok := elfInfos.get(key); ok {
		if ei == nil {
			return nil, errNotELF
		}
		return ei, nil
	}
	ei, err := m.readELFFile(pid)
	if err == nil || errors.Is(err, errNotELF) {
		elfInfos.put(key, ei) // nil: not ELF
	}
	return ei, err
}

// fileIdentity returns what identifies the contents of the module's file
// (stat(2) of its map_files link, which follows it to the mapped file:
// device, inode, size, modification and change times), ok false when the
// link cannot be statted or is not a regular file.
func (m *Module) fileIdentity(pid int) (identity, bool) {
	if len(m.Mappings) == 0 {
		return identity{}, false
	}
	first := m.Mappings[0]
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, first.Start, first.End), &st); err != nil ||
		st.Mode&unix.S_IFMT != unix.S_IFREG {
		return identity{}, false
	}
	return identity{st.Dev, st.Ino, st.Size, st.Mtim, st.Ctim}, true
}

// identity is a file's contents as far as stat(2) tells: a file written in
// place changes its modification time, one replaced on disk its inode.
type identity struct {
	dev, ino   uint64
	size       int64
	mtim, ctim unix.Timespec
}

// elfInfoCache keeps the program headers of mapped files by identity:
// patching a thousand processes of one executable read (and parsed the
// section headers of) every library of each one.
type elfInfoCache struct {
	mu sync.Mutex
	m  map[identity]*elfInfo
}

var elfInfos elfInfoCache

func (c *elfInfoCache) get(k identity) (*elfInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ei, ok := c.m[k]
	return ei, ok
}

func (c *elfInfoCache) put(k identity, ei *elfInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= 4096 { // bound a long-lived caller's cache
		c.m = map[identity]*elfInfo{}
	}
	c.m[k] = ei
}

// readELFFile opens the module's file and reads its ELF program headers.
func (m *Module) readELFFile(pid int) (_ *elfInfo, err error) {
	f, err := m.Open(pid)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil || string(magic[:]) != elf.ELFMAG {
		return nil, errNotELF
	}
	// debug/elf may panic on hostile headers; the target's files are not
	// trusted.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parse ELF headers: panic: %v", r)
		}
	}()
	ef, err := elf.NewFile(f)
	if err != nil {
		return nil, fmt.Errorf("parse ELF headers: %w", err)
	}
	ei := &elfInfo{class: ef.Class, bo: ef.ByteOrder}
	for _, p := range ef.Progs {
		ei.progs = append(ei.progs, p.ProgHeader)
	}
	return ei, nil
}

// bias finds the load bias from the lowest mapping whose file offset is the
// page-aligned start of a PT_LOAD segment.
func (ei *elfInfo) bias(maps []Mapping) (uint64, bool) {
	for _, mp := range maps {
		for _, p := range ei.progs {
			if p.Type != elf.PT_LOAD {
				continue
			}
			if p.Off&^(pageSize-1) == mp.Offset {
				return mp.Start - p.Vaddr&^(pageSize-1), true
			}
		}
	}
	return 0, false
}

func (ei *elfInfo) ptrSize() uint64 {
	if ei.class == elf.ELFCLASS32 {
		return 4
	}
	return 8
}

// findExe identifies the main executable: the module holding AT_PHDR from
// /proc/PID/auxv (the run-time address of the program headers the kernel
// loaded, see getauxval(3)), else the module with the inode of /proc/PID/exe.
func findExe(pid int, mods []*Module) *Module {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/auxv", pid)); err == nil {
		// The host's auxv entries are pairs of native unsigned longs.
		for i := 0; i+16 <= len(b); i += 16 {
			tag := binary.NativeEndian.Uint64(b[i:])
			if tag == 0 { // AT_NULL
				break
			}
			if tag == atPHDR {
				phdr := binary.NativeEndian.Uint64(b[i+8:])
				for _, m := range mods {
					if m.Contains(phdr) {
						return m
					}
				}
			}
		}
	}
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/exe", pid), &st); err == nil {
		for _, m := range mods {
			if m.Inode == st.Ino && m.Dev == fmt.Sprintf("%02x:%02x", unix.Major(st.Dev), unix.Minor(st.Dev)) {
				return m
			}
		}
	}
	return nil
}

// maxLinkMaps bounds the walk of the target's lists, which may be corrupt or
// cyclic.
const maxLinkMaps = 8192

// linkMapOrder returns the l_ld (run-time address of each object's dynamic
// section) of every link_map the dynamic linker lists, in load order, across
// all namespaces. It reads, with mem:
//
//   - the executable's PT_DYNAMIC, for DT_DEBUG, which ld.so sets to the
//     address of its struct r_debug (<link.h>);
//   - r_debug { int r_version; struct link_map *r_map; ... }, and, with
//     r_version >= 2 (glibc 2.35+), r_debug_extended.r_next for the
//     dlmopen namespaces;
//   - link_map { l_addr; l_name; l_ld; l_next; l_prev; } (the public part
//     of the structure, stable ABI).
//
// Any read error ends the walk: the caller falls back to address order.
func linkMapOrder(exe *Module, ei *elfInfo, mem MemReader) []uint64 {
	if ei == nil {
		return nil
	}
	ps := ei.ptrSize()
	word := func(addr uint64) (uint64, bool) {
		b := make([]byte, ps)
		if mem(addr, b) != nil {
			return 0, false
		}
		if ps == 4 {
			return uint64(ei.bo.Uint32(b)), true
		}
		return ei.bo.Uint64(b), true
	}
	var dynAddr, dynSize uint64
	for _, p := range ei.progs {
		if p.Type == elf.PT_DYNAMIC {
			dynAddr, dynSize = p.Vaddr+exe.Bias, p.Memsz
		}
	}
	if dynAddr == 0 {
		return nil
	}
	rdebug := uint64(0)
	for i := uint64(0); i+2*ps <= dynSize && i < maxLinkMaps*2*ps; i += 2 * ps {
		tag, ok := word(dynAddr + i)
		if !ok || tag == uint64(elf.DT_NULL) {
			break
		}
		if tag == uint64(elf.DT_DEBUG) {
			rdebug, _ = word(dynAddr + i + ps)
			break
		}
	}
	var out []uint64
	seen := map[uint64]bool{}
	for ns := 0; rdebug != 0 && ns < 256 && !seen[rdebug]; ns++ {
		seen[rdebug] = true
		version, ok := word(rdebug)
		if !ok {
			break
		}
		version &= 0xffffffff // int r_version
		lm, ok := word(rdebug + ps)
		for n := 0; ok && lm != 0 && n < maxLinkMaps && !seen[lm]; n++ {
			seen[lm] = true
			if ld, ok := word(lm + 2*ps); ok {
				out = append(out, ld)
			}
			lm, ok = word(lm + 3*ps)
		}
		if version < 2 {
			break
		}
		// r_debug_extended.r_next follows r_debug's five fields
		// (r_version padded to a word, r_map, r_brk, r_state padded, r_ldbase).
		rdebug, ok = word(rdebug + 5*ps)
		if !ok {
			break
		}
	}
	return out
}

// atPHDR is AT_PHDR (<elf.h>, getauxval(3)): the run-time address of the
// program headers of the program the kernel loaded.
const atPHDR = 3
