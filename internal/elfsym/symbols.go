package elfsym

import (
	"cmp"
	"debug/elf"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"
)

// Symbol is one entry of .symtab or .dynsym.
type Symbol struct {
	Name string
	// Version is the GNU symbol version ("GLIBC_2.14"), from .gnu.version and
	// .gnu.version_d/.gnu.version_r for .dynsym, or from a "name@VER" /
	// "name@@VER" spelling in .symtab. "" when unversioned.
	Version string
	// DefaultVersion: the version is the default one ("name@@VER"), the one a
	// reference without version binds to.
	DefaultVersion bool
	Value, Size    uint64
	Type           elf.SymType
	Bind           elf.SymBind
	Section        elf.SectionIndex
	// File is the name of the STT_FILE symbol in effect for a local symbol of
	// .symtab (the source file it was compiled from); "" for globals.
	File string
	// Dynamic: the symbol is in .dynsym (possibly also in .symtab).
	Dynamic bool
	// Boundary: not a symbol but an .eh_frame function boundary of a
	// stripped file (Table.WithBoundaries).
	Boundary bool
}

// Defined reports whether the symbol is defined in this file.
func (s Symbol) Defined() bool { return s.Section != elf.SHN_UNDEF }

// IsFunc reports whether the symbol is a function (STT_FUNC or STT_GNU_IFUNC).
func (s Symbol) IsFunc() bool { return s.Type == elf.STT_FUNC || s.Type == elf.STT_GNU_IFUNC }

// String spells the symbol as "name", "name@VER" or "name@@VER".
func (s Symbol) String() string {
	switch {
	case s.Version == "":
		return s.Name
	case s.DefaultVersion:
		return s.Name + "@@" + s.Version
	default:
		return s.Name + "@" + s.Version
	}
}

// Table is the merged symbol table of a file. It is immutable and safe for
// concurrent use.
type Table struct {
	syms   []Symbol
	byName map[string][]int
	funcs  []Symbol // defined functions sorted by Value
	// sized: defined symbols in a real section with size > 0 or STT_FUNC,
	// sorted by Value, for NextAfter.
	sized []Symbol
	f     *File
}

// splitVersion splits "name@VER" / "name@@VER" as written in .symtab and in
// lookups. A leading '@' is part of the name.
func splitVersion(s string) (name, ver string, def bool) {
	i := strings.IndexByte(s, '@')
	if i <= 0 {
		return s, "", false
	}
	name, ver = s[:i], s[i+1:]
	if strings.HasPrefix(ver, "@") {
		return name, ver[1:], true
	}
	return name, ver, false
}

type mergeKey struct {
	name    string
	value   uint64
	defined bool
}

// Symbols reads .dynsym and .symtab and merges them: a global symbol present in
// both appears once, with the version information of .dynsym. Local symbols of
// .symtab carry the STT_FILE in effect. A file without either table yields an
// empty table.
func (f *File) Symbols() (_ *Table, err error) {
	defer guard(&err, "read symbols")
	return f.symbols(f)
}

// SymbolsWithDebug is Symbols with .symtab read from d, the file's separate
// debug file (objcopy --only-keep-debug keeps .symtab at the same link-time
// addresses; its .dynsym is SHT_NOBITS, so .dynsym and its versions come
// from f). Whether d belongs to f is the caller's to check
// (internal/debuginfo).
func (f *File) SymbolsWithDebug(d *File) (_ *Table, err error) {
	defer guard(&err, "read symbols")
	return f.symbols(d)
}

// HasSymtab reports whether the file has a .symtab with contents (a file
// run through strip --strip-all or --strip-unneeded has none).
func (f *File) HasSymtab() bool {
	s := f.f.SectionByType(elf.SHT_SYMTAB)
	return s != nil && s.Size > 0
}

func (f *File) symbols(stFile *File) (_ *Table, err error) {
	dyn, err := f.f.DynamicSymbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("read .dynsym: %w", err)
	}
	st, err := stFile.f.Symbols()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return nil, fmt.Errorf("read .symtab: %w", err)
	}
	// Sized once: growing these tables was most of the cost of reading the
	// C library's symbols (BenchmarkSymbolsLibc).
	n := len(dyn) + len(st)
	t := &Table{byName: make(map[string][]int, n), syms: make([]Symbol, 0, n), f: f}
	seen := make(map[mergeKey]bool, len(dyn))
	for _, ds := range dyn {
		s := Symbol{
			Name:    ds.Name,
			Value:   ds.Value,
			Size:    ds.Size,
			Type:    elf.ST_TYPE(ds.Info),
			Bind:    elf.ST_BIND(ds.Info),
			Section: ds.Section,
			Dynamic: true,
		}
		if ds.HasVersion && ds.VersionIndex.Index() > 1 {
			s.Version = ds.Version
			// A defined symbol's version is the default one unless
			// VERSYM_HIDDEN is set ("name@VER" rather than "name@@VER").
			s.DefaultVersion = s.Version != "" && s.Defined() && !ds.VersionIndex.IsHidden()
		}
		if s.Name == "" {
			continue
		}
		seen[mergeKey{s.Name, s.Value, s.Defined()}] = true
		t.add(s)
	}

	remap := f.sectionMap(stFile)
	file := ""
	for _, es := range st {
		typ, bind := elf.ST_TYPE(es.Info), elf.ST_BIND(es.Info)
		if typ == elf.STT_FILE {
			file = es.Name
			continue
		}
		if es.Name == "" {
			continue // section symbols and other nameless entries
		}
		name, ver, def := splitVersion(es.Name)
		s := Symbol{
			Name:           name,
			Version:        ver,
			DefaultVersion: def && es.Section != elf.SHN_UNDEF,
			Value:          es.Value,
			Size:           es.Size,
			Type:           typ,
			Bind:           bind,
			Section:        remap(es.Section),
		}
		if bind == elf.STB_LOCAL {
			s.File = file
		} else if seen[mergeKey{name, s.Value, s.Defined()}] {
			continue // already there from .dynsym, with its version
		}
		t.add(s)
	}

	t.index()
	return t, nil
}

// index builds the address-sorted lists of the table.
func (t *Table) index() {
	t.funcs = make([]Symbol, 0, len(t.syms))
	t.sized = make([]Symbol, 0, len(t.syms))
	for _, s := range t.syms {
		if !s.Defined() {
			continue
		}
		if s.IsFunc() {
			t.funcs = append(t.funcs, s)
		}
		if s.Section < elf.SHN_LORESERVE && (s.Size > 0 || s.Type == elf.STT_FUNC) {
			t.sized = append(t.sized, s)
		}
	}
	sortSyms(t.funcs)
	sortSyms(t.sized)
}

// sectionMap maps the section indexes of d (f's debug file) to f's: a
// debug file keeps the section headers of the file it was split from, but a
// strip that removed a section (Debian's dh_strip removes .comment and
// .note) renumbers those after it. Sections are matched by name and
// address; an index without a match is kept.
func (f *File) sectionMap(d *File) func(elf.SectionIndex) elf.SectionIndex {
	if d == f {
		return func(i elf.SectionIndex) elf.SectionIndex { return i }
	}
	type key struct {
		name string
		addr uint64
	}
	own := map[key]int{}
	for i, s := range f.f.Sections {
		own[key{s.Name, s.Addr}] = i
	}
	m := map[elf.SectionIndex]elf.SectionIndex{}
	for i, s := range d.f.Sections {
		if j, ok := own[key{s.Name, s.Addr}]; ok {
			m[elf.SectionIndex(i)] = elf.SectionIndex(j)
		}
	}
	return func(i elf.SectionIndex) elf.SectionIndex {
		if i >= elf.SHN_LORESERVE || i == elf.SHN_UNDEF {
			return i
		}
		if j, ok := m[i]; ok {
			return j
		}
		return i
	}
}

// WithBoundaries returns a copy of the table with a function symbol for
// every range [Begin, End) that no function symbol starts at (the
// .eh_frame function boundaries of a stripped file, internal/unwind): the
// functions a .dynsym-only table does not name still bound their
// neighbours' padding (NextAfter, PrevFunc, Containing). They are named
// "<function at ADDR>" for messages but Lookup never finds them; Type
// STT_FUNC, Bind STB_LOCAL, Boundary set.
func (t *Table) WithBoundaries(ranges [][2]uint64) *Table {
	starts := map[uint64]bool{}
	for _, s := range t.funcs {
		starts[s.Value] = true
	}
	n := &Table{byName: t.byName, syms: slices.Clone(t.syms), f: t.f}
	for _, r := range ranges {
		if r[1] <= r[0] || starts[r[0]] {
			continue
		}
		starts[r[0]] = true
		sec := elf.SHN_ABS
		if i := t.sectionIndexAt(r[0]); i >= 0 {
			sec = elf.SectionIndex(i)
		}
		n.syms = append(n.syms, Symbol{Name: fmt.Sprintf("<function at %#x>", r[0]), Value: r[0], Size: r[1] - r[0],
			Type: elf.STT_FUNC, Bind: elf.STB_LOCAL, Section: sec, Boundary: true})
	}
	n.index()
	return n
}

// sortSyms orders by address, then globals before locals, then by name, so
// that the results of Functions and Containing are deterministic. The order
// is total (the remaining fields break ties; entries equal in all of them are
// interchangeable), so an unstable sort is deterministic too, and much faster
// than a stable one on the C library's thousands of symbols.
func sortSyms(s []Symbol) {
	slices.SortFunc(s, func(a, b Symbol) int {
		if c := cmp.Compare(a.Value, b.Value); c != 0 {
			return c
		}
		if al, bl := a.Bind == elf.STB_LOCAL, b.Bind == elf.STB_LOCAL; al != bl {
			if bl {
				return -1
			}
			return 1
		}
		return cmp.Or(
			strings.Compare(a.Name, b.Name),
			strings.Compare(a.Version, b.Version),
			cmpBool(a.DefaultVersion, b.DefaultVersion),
			cmpBool(a.Dynamic, b.Dynamic),
			cmp.Compare(a.Size, b.Size),
			cmp.Compare(a.Type, b.Type),
			cmp.Compare(a.Bind, b.Bind),
			cmp.Compare(a.Section, b.Section),
			strings.Compare(a.File, b.File),
		)
	})
}

// cmpBool orders true before false.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

func (t *Table) add(s Symbol) {
	t.byName[s.Name] = append(t.byName[s.Name], len(t.syms))
	t.syms = append(t.syms, s)
}

// All returns every symbol of the table (defined and undefined, except
// nameless and STT_FILE entries), .dynsym first.
func (t *Table) All() []Symbol {
	return append([]Symbol(nil), t.syms...)
}

// Lookup returns the defined symbols named name. name may carry a version:
// "memcpy@GLIBC_2.14" matches that version whether it is the default or not,
// "memcpy@@GLIBC_2.14" only the default version. For a bare name defined with
// several versions only the default-version definition(s) are returned, as the
// dynamic linker would bind an unversioned reference. Local symbols of the same
// name (static functions of different files) are all returned; use
// LookupLocal or Unique to tell them apart.
func (t *Table) Lookup(name string) []Symbol {
	base, ver, def := splitVersion(name)
	var cands []Symbol
	for _, i := range t.byName[base] {
		if s := t.syms[i]; s.Defined() {
			cands = append(cands, s)
		}
	}
	return matchVersion(cands, ver, def)
}

// matchVersion keeps the defined symbols of cands (all of one name) that a
// lookup with version ver (default-only when def) matches; see Lookup.
func matchVersion(cands []Symbol, ver string, def bool) []Symbol {
	var out []Symbol
	for _, s := range cands {
		if ver != "" && (s.Version != ver || (def && !s.DefaultVersion)) {
			continue
		}
		out = append(out, s)
	}
	if ver == "" {
		hasDefault := false
		versions := map[string]bool{}
		for _, s := range out {
			hasDefault = hasDefault || s.DefaultVersion
			if s.Bind != elf.STB_LOCAL {
				versions[s.Version] = true
			}
		}
		if hasDefault && len(versions) > 1 {
			kept := out[:0]
			for _, s := range out {
				if s.DefaultVersion || s.Bind == elf.STB_LOCAL {
					kept = append(kept, s)
				}
			}
			out = kept
		}
	}
	return out
}

// LookupLocal returns the defined local symbols named name whose STT_FILE has
// the same base name as file ("lib1.c" matches "src/lib1.c").
func (t *Table) LookupLocal(name, file string) []Symbol {
	want := path.Base(file)
	var out []Symbol
	for _, i := range t.byName[name] {
		s := t.syms[i]
		if s.Bind == elf.STB_LOCAL && s.Defined() && s.File != "" && path.Base(s.File) == want {
			out = append(out, s)
		}
	}
	return out
}

// Unique resolves name to exactly one defined symbol. name is as for Lookup;
// "name" followed by a file ("helper", "lib1.c") can be resolved with
// UniqueLocal. Aliases (several names of one address) count as one: the same
// address and size under the same name is not ambiguous. It returns an error
// wrapping ErrNotFound or ErrAmbiguous.
func (t *Table) Unique(name string) (Symbol, error) {
	return unique(name, t.Lookup(name))
}

// UniqueLocal is Unique for LookupLocal.
func (t *Table) UniqueLocal(name, file string) (Symbol, error) {
	return unique(name+" in "+file, t.LookupLocal(name, file))
}

func unique(what string, c []Symbol) (Symbol, error) {
	if len(c) == 0 {
		return Symbol{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	for _, s := range c[1:] {
		if s.Value != c[0].Value || s.Size != c[0].Size {
			var where []string
			for _, s := range c {
				w := fmt.Sprintf("%#x", s.Value)
				if s.File != "" {
					w += " (" + s.File + ")"
				}
				where = append(where, w)
			}
			return Symbol{}, fmt.Errorf("%s: %w: defined at %s", what, ErrAmbiguous, strings.Join(where, ", "))
		}
	}
	return c[0], nil
}

// Functions returns the defined STT_FUNC and STT_GNU_IFUNC symbols sorted by
// Value.
func (t *Table) Functions() []Symbol {
	return append([]Symbol(nil), t.funcs...)
}

// Containing returns the function symbol whose [Value, Value+Size) contains
// addr. When several do (aliases), the one starting closest to addr wins, and
// globals win over locals.
func (t *Table) Containing(addr uint64) (Symbol, bool) {
	// funcs is sorted by Value (ties: globals first), so walking back from
	// the last symbol starting at or before addr finds the closest start
	// first. The walk continues past non-matching symbols because a large
	// function may enclose smaller symbols (rare, but cheap to honour).
	i := sort.Search(len(t.funcs), func(i int) bool { return t.funcs[i].Value > addr })
	for j := i - 1; j >= 0; j-- {
		if s := t.funcs[j]; addr-s.Value < s.Size {
			return s, true
		}
	}
	return Symbol{}, false
}

// NextAfter returns the address of the first defined symbol (of any type, with
// a size or of type STT_FUNC) that starts strictly after addr in the same
// section as addr. Together with SectionEnd it bounds the padding that
// follows a function.
func (t *Table) NextAfter(addr uint64) (uint64, bool) {
	sec := t.sectionIndexAt(addr)
	if sec == -2 {
		return 0, false
	}
	i := sort.Search(len(t.sized), func(i int) bool { return t.sized[i].Value > addr })
	for ; i < len(t.sized); i++ {
		s := t.sized[i]
		if sec < 0 || s.Section == elf.SectionIndex(sec) {
			return s.Value, true
		}
	}
	return 0, false
}

// PrevFunc returns the function symbol that ends closest at or below addr in
// addr's section, when the bytes from its end up to addr belong to no symbol
// (no sized symbol or function label of that section starts or ends inside
// them, and none encloses them). Together with the symbol at addr it bounds
// the padding above a function. A function label of size 0 (crtstuff's, an
// assembler routine without .size) is returned too: its code then runs up to
// some point before addr that only decoding can tell.
func (t *Table) PrevFunc(addr uint64) (Symbol, bool) {
	sec := t.sectionIndexAt(addr)
	if sec == -2 {
		return Symbol{}, false
	}
	i := sort.Search(len(t.sized), func(i int) bool { return t.sized[i].Value >= addr })
	var prev Symbol
	found := false
	// Walk down: the first symbol below addr must be a sized function ending
	// at or before addr; a few more are looked at for one enclosing the gap.
	for j, seen := i-1, 0; j >= 0 && seen < 16; j-- {
		s := t.sized[j]
		if sec >= 0 && s.Section != elf.SectionIndex(sec) {
			continue
		}
		seen++
		end := s.Value + s.Size
		if !found {
			if !s.IsFunc() || end > addr {
				return Symbol{}, false
			}
			prev, found = s, true
			continue
		}
		if end > prev.Value+prev.Size {
			return Symbol{}, false // encloses the gap
		}
	}
	return prev, found
}

// sectionIndexAt returns the index of the SHF_ALLOC section containing addr,
// or -1 when the file has no section headers.
func (t *Table) sectionIndexAt(addr uint64) int {
	if t.f == nil || len(t.f.f.Sections) <= 1 {
		return -1
	}
	s := t.f.allocSectionAt(addr)
	if s == nil {
		return -2 // no section: nothing can be "in the same section"
	}
	for i, x := range t.f.f.Sections {
		if x == s {
			return i
		}
	}
	return -2
}
