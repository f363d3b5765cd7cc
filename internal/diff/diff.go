// Package diff works out what a source fix changed, by comparing two builds
// of the same translation unit: OLD.o (the code the running program was built
// from) and NEW.o (the same file with the fix), both compiled with the
// target's compiler and flags plus -ffunction-sections -fdata-sections. It is
// hotpatch's counterpart of kpatch's create-diff-object.
//
// Compare correlates the symbols of the two objects, classifies every function
// and data object as changed, new or unchanged, refuses changes that cannot
// take effect in a running process (a new initial value or size of an existing
// variable), records the run-pre bytes of every function the patch replaces
// (OLD.o's code with relocated fields masked), and rewrites NEW.o so that the
// patch linker loads only the changed and new functions: unchanged functions
// become undefined symbols, which the engine resolves to the target's copies.
//
// # Correlation
//
// Global symbols correlate by name; statics by name within the translation
// unit. GCC's numbered names — static locals (counter.0) and clones
// (foo.isra.0, foo.constprop.0, foo.part.0) — correlate by their name without
// the numbers and, for static locals, the functions that use them: adding a
// static local elsewhere in the file renumbers the others, and the patch must
// still reach the target's existing variable. foo.cold (the part of foo GCC
// moved to .text.unlikely) belongs to foo: both are patched or neither.
//
// A relocation is compared by type, place, addend and the correlated key of
// what it refers to — never by symbol index or section offset. References to
// read-only data (string literals, const tables, floating-point constants)
// are keyed by content, so code that uses a changed constant is patched.
//
// The package is pure computation on untrusted input: every index is
// validated and a panic in the parser is returned as ErrBadObject.
package diff

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/hotpatch/hotpatch/internal/arch"
	_ "github.com/hotpatch/hotpatch/internal/arch/amd64" // register x86-64
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrBadObject: an object is malformed or not a relocatable object.
	ErrBadObject = errors.New("bad object file")
	// ErrMismatch: OLD.o and NEW.o are not two builds of one translation
	// unit (different machine or source file).
	ErrMismatch = errors.New("objects do not match")
	// ErrNeedSections: an object was not built with -ffunction-sections
	// (several functions share a section, so they cannot be loaded apart).
	ErrNeedSections = errors.New("object not built with -ffunction-sections -fdata-sections")
	// ErrLiveData: the fix changes the initial value or the size of a
	// variable that already exists in the running process; that cannot take
	// effect live (the process's copy already holds its current value).
	ErrLiveData = errors.New("change to an existing variable cannot be applied live")
	// ErrNewTLS: the fix adds a thread-local variable; the threads of a
	// running process cannot get new thread-local storage.
	ErrNewTLS = errors.New("new thread-local variable cannot be added live")
)

// Status of a function or data object.
type Status string

// Statuses.
const (
	Changed   Status = "changed"
	New       Status = "new"
	Unchanged Status = "unchanged"
	Removed   Status = "removed" // in OLD.o only; the patch leaves it alone
)

// Func is one function of the comparison.
type Func struct {
	// Name is the function's name in the patch object (after correlation this
	// is OLD.o's name, the name the target has).
	Name   string `json:"name"`
	Local  bool   `json:"local,omitempty"`
	Status Status `json:"status"`
	Size   uint64 `json:"size"`
	// Part is the function a GCC-split part (name.cold) belongs to; such
	// parts are never redirected themselves.
	Part string `json:"part_of,omitempty"`
	// NewName is the function's name in NEW.o when it differs from Name
	// (GCC renumbered a clone: foo.part.1 for the target's foo.part.0).
	NewName string `json:"new_name,omitempty"`
	// Orig and OrigMask are OLD.o's bytes of a changed function, with the
	// bytes under relocations masked (mask 0) — the run-pre check.
	Orig     []byte `json:"-"`
	OrigMask []byte `json:"-"`
	// Refs are the function's relocations with what they refer to (set by
	// Functions): what run-pre matching checks a candidate's relocated
	// fields against.
	Refs []Ref `json:"-"`
}

// Ref is one relocation of a function: at Off bytes into it, of type Type,
// referring to Target+Addend (Addend relative to the target's start).
type Ref struct {
	Off    uint64
	Type   uint32
	Addend int64
	// Target is the referenced function or data object of the object
	// (TargetFunc, TargetLocal say which kind), or the name of an undefined
	// symbol (Undefined); "" for anything else (string literals, anonymous
	// constants).
	Target      string
	TargetFunc  bool
	TargetLocal bool
	Undefined   bool
}

// Data is one data object (or string literal) of the comparison.
type Data struct {
	Name string `json:"name"`
	// Kind is "variable" (writable), "constant" (read-only object) or
	// "string" (a string literal, Name is its quoted text).
	Kind   string `json:"kind"`
	Status Status `json:"status"`
	Size   uint64 `json:"size"`
	// Reason explains a change that is refused.
	Reason string `json:"reason,omitempty"`
}

// Result of comparing OLD.o with NEW.o.
type Result struct {
	SourceFile string
	Funcs      []Func
	Data       []Data
	// Object is NEW.o rewritten to hold only the changed and new functions
	// (see the package comment); it is what goes into the patch.
	Object []byte
}

// Redirected returns the functions the patch replaces in the target.
func (r *Result) Redirected() []Func {
	var out []Func
	for _, f := range r.Funcs {
		if f.Status == Changed && f.Part == "" {
			out = append(out, f)
		}
	}
	return out
}

// Added returns the new functions (not in the target).
func (r *Result) Added() []Func {
	var out []Func
	for _, f := range r.Funcs {
		if f.Status == New && f.Part == "" {
			out = append(out, f)
		}
	}
	return out
}

// item is a named function or data object of one object.
type item struct {
	sym  int
	name string
	key  string
	fn   bool
	sec  elf.SectionIndex
	val  uint64
	size uint64
	ro   bool // read-only data
	tls  bool // thread-local variable (.tdata/.tbss)
}

// numSuffix matches GCC's numbering of static locals and clones (.0, .12).
var numSuffix = regexp.MustCompile(`\.[0-9]+`)

// side is one object with its items indexed.
type side struct {
	o       *object
	a       arch.Arch
	items   []*item
	byKey   map[string]*item
	bySym   map[int]*item
	bySec   map[elf.SectionIndex][]*item
	anonKey map[elf.SectionIndex]string
}

func newSide(o *object) (*side, error) {
	a, err := arch.ForMachine(o.f.Machine)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadObject, err)
	}
	s := &side{o: o, a: a, byKey: map[string]*item{}, bySym: map[int]*item{}, bySec: map[elf.SectionIndex][]*item{}, anonKey: map[elf.SectionIndex]string{}}
	for i := 1; i < len(o.syms); i++ {
		sy := o.syms[i]
		t := elf.ST_TYPE(sy.Info)
		if (t != elf.STT_FUNC && t != elf.STT_OBJECT && t != elf.STT_TLS) || sy.Name == "" {
			continue
		}
		sec := o.sec(sy.Section)
		if sec == nil {
			continue // undefined, absolute or common
		}
		it := &item{sym: i, name: sy.Name, fn: t == elf.STT_FUNC, sec: sy.Section, val: sy.Value, size: sy.Size,
			ro: t == elf.STT_OBJECT && sec.Flags&elf.SHF_WRITE == 0, tls: t == elf.STT_TLS}
		if _, ok := o.bytesOf(sec, it.val, it.size); !ok {
			return nil, fmt.Errorf("%w: symbol %s lies outside its section %s", ErrBadObject, sy.Name, sec.Name)
		}
		s.items = append(s.items, it)
		s.bySym[i] = it
		s.bySec[sy.Section] = append(s.bySec[sy.Section], it)
	}
	for _, its := range s.bySec {
		sort.SliceStable(its, func(i, j int) bool { return its[i].val < its[j].val })
	}
	// Function keys first: data keys of static locals name their owners.
	for _, it := range s.items {
		if it.fn {
			it.key = "F:" + s.canon(it.sym)
		}
	}
	owners := map[*item]map[string]bool{}
	for _, fn := range s.items {
		if !fn.fn {
			continue
		}
		for _, r := range s.relsIn(fn) {
			if d := s.referenced(r); d != nil && !d.fn {
				if owners[d] == nil {
					owners[d] = map[string]bool{}
				}
				owners[d][fn.key] = true
			}
		}
	}
	for _, it := range s.items {
		if it.fn {
			continue
		}
		sy := o.syms[it.sym]
		k := s.canon(it.sym)
		if elf.ST_BIND(sy.Info) == elf.STB_LOCAL && numSuffix.MatchString(sy.Name) {
			var ow []string
			for f := range owners[it] {
				ow = append(ow, f)
			}
			sort.Strings(ow)
			k += "@" + strings.Join(ow, ",")
		}
		it.key = "D:" + k
	}
	// Make keys unique in this object (in symbol order).
	for _, it := range s.items {
		k := it.key
		for n := 2; s.byKey[k] != nil; n++ {
			k = fmt.Sprintf("%s#%d", it.key, n)
		}
		it.key = k
		s.byKey[k] = it
	}
	return s, nil
}

// canon is the correlation name of symbol i: globals keep their name,
// locals lose GCC's numbers.
func (s *side) canon(i int) string {
	sy := s.o.syms[i]
	if elf.ST_BIND(sy.Info) != elf.STB_LOCAL {
		return sy.Name
	}
	return "static " + numSuffix.ReplaceAllString(sy.Name, "")
}

// relsIn returns the relocations whose place lies in item it, sorted by place.
func (s *side) relsIn(it *item) []rel {
	var out []rel
	for _, r := range s.o.relas[int(it.sec)] {
		if r.off >= it.val && r.off < it.val+it.size {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].off < out[j].off })
	return out
}

// referenced returns the item a relocation refers to (through its symbol or
// a section symbol), nil for anything else.
func (s *side) referenced(r rel) *item {
	if it := s.bySym[int(r.sym)]; it != nil {
		return it
	}
	sy := s.o.syms[r.sym]
	if elf.ST_TYPE(sy.Info) != elf.STT_SECTION {
		return nil
	}
	its := s.bySec[sy.Section]
	if len(its) == 0 {
		return nil
	}
	// The item holding the addressed byte; PC-relative addends carry a
	// small negative bias (-4 on x86-64), hence the clamp at the first item.
	off := max(r.addend, 0)
	best := its[0]
	for _, it := range its {
		if int64(it.val) <= off {
			best = it
		}
	}
	return best
}

// targetKey returns the correlation key of what r refers to, and the addend
// relative to it. Read-only data is keyed by content.
func (s *side) targetKey(r rel, depth int) (string, int64) {
	sy := s.o.syms[r.sym]
	if r.sym == 0 {
		return "", r.addend
	}
	if it := s.referenced(r); it != nil {
		base := int64(it.val)
		if s.bySym[int(r.sym)] == it {
			base = 0 // relative to the symbol itself
		}
		if it.ro {
			return it.key + "=" + s.contentHash(it.sec, it.val, it.size, depth), r.addend - base
		}
		return it.key, r.addend - base
	}
	sec := s.o.sec(sy.Section)
	if sy.Section == elf.SHN_UNDEF {
		return "U:" + sy.Name, r.addend
	}
	if sec == nil {
		return fmt.Sprintf("N:%s:%d", sy.Name, sy.Value), r.addend
	}
	if sec.Flags&elf.SHF_ALLOC == 0 {
		return "nonalloc:" + sec.Name, r.addend
	}
	// Anonymous data: string literals and constants (.LC0 symbols or section
	// symbols into .rodata*). A string is keyed by its text, anything else by
	// the content of its whole section.
	if sec.Flags&elf.SHF_STRINGS != 0 {
		off := int64(sy.Value)
		addend := r.addend
		if elf.ST_TYPE(sy.Info) == elf.STT_SECTION {
			off, addend = max(r.addend, 0), min(r.addend, 0)
		}
		if str, ok := s.stringAt(sec, uint64(off)); ok {
			return "S:" + str, addend
		}
	}
	return "A:" + strings.TrimRight(numSuffix.ReplaceAllString(sec.Name, ""), ".") + "=" + s.contentHash(sy.Section, 0, sec.Size, depth),
		r.addend + int64(sy.Value)
}

func (s *side) stringAt(sec *elf.Section, off uint64) (string, bool) {
	b, ok := s.o.bytesOf(sec, off, sec.Size-min(off, sec.Size))
	if !ok {
		return "", false
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b), true
}

// contentHash hashes [off, off+size) of a section with the keys of the
// relocations in it (one level deep: a table of pointers to other constants
// is keyed by their names, not their contents).
func (s *side) contentHash(si elf.SectionIndex, off, size uint64, depth int) string {
	sec := s.o.sec(si)
	if sec == nil {
		return ""
	}
	h := sha256.New()
	if b, ok := s.o.bytesOf(sec, off, size); ok {
		h.Write(b)
	}
	if depth < 1 {
		for _, r := range s.o.relas[int(si)] {
			if r.off >= off && r.off < off+size {
				k, a := s.targetKey(r, depth+1)
				fmt.Fprintf(h, "|%d %d %s %d", r.off-off, r.typ, k, a)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// sig is what decides whether an item changed: its bytes and relocations.
func (s *side) sig(it *item) (code []byte, rels []string) {
	sec := s.o.sec(it.sec)
	code, _ = s.o.bytesOf(sec, it.val, it.size)
	for _, r := range s.relsIn(it) {
		k, a := s.targetKey(r, 0)
		// Function-local references (jump tables, calls to itself through
		// the section symbol) are keyed by the function, so they compare
		// equal between the objects.
		rels = append(rels, fmt.Sprintf("%d %d %s %d", r.off-it.val, r.typ, k, a))
	}
	return code, rels
}

func equalSig(a *side, ai *item, b *side, bi *item) bool {
	if ai.size != bi.size {
		return false
	}
	ac, ar := a.sig(ai)
	bc, br := b.sig(bi)
	if !bytes.Equal(ac, bc) || len(ar) != len(br) {
		return false
	}
	for i := range ar {
		if ar[i] != br[i] {
			return false
		}
	}
	return true
}

// parentOf returns the key of the function a split part belongs to
// ("F:foo" for foo.cold), "" for ordinary functions.
func parentOf(it *item) string {
	if it.fn && strings.HasSuffix(it.key, ".cold") {
		return strings.TrimSuffix(it.key, ".cold")
	}
	return ""
}

// Compare compares OLD.o with NEW.o; see the package comment.
func Compare(oldObj, newObj []byte) (*Result, error) {
	oo, err := parse(oldObj)
	if err != nil {
		return nil, fmt.Errorf("old object: %w", err)
	}
	no, err := parse(newObj)
	if err != nil {
		return nil, fmt.Errorf("new object: %w", err)
	}
	if oo.f.Machine != no.f.Machine {
		return nil, fmt.Errorf("%w: old object is for %v, new for %v", ErrMismatch, oo.f.Machine, no.f.Machine)
	}
	if oo.file != no.file {
		return nil, fmt.Errorf("%w: old object was compiled from %q, new from %q: compare two builds of the same source file", ErrMismatch, oo.file, no.file)
	}
	var res *Result
	err = func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%w: malformed ELF object: %v", ErrBadObject, r)
			}
		}()
		res, err = compare(oo, no)
		return err
	}()
	return res, err
}

func compare(oo, no *object) (*Result, error) {
	olds, err := newSide(oo)
	if err != nil {
		return nil, fmt.Errorf("old object: %w", err)
	}
	ns, err := newSide(no)
	if err != nil {
		return nil, fmt.Errorf("new object: %w", err)
	}
	for _, sd := range []*side{olds, ns} {
		if err := sd.checkOneFunctionPerSection(); err != nil {
			return nil, err
		}
	}
	c := &comparison{olds: olds, ns: ns, res: &Result{SourceFile: no.file}, status: map[*item]Status{}, renames: map[int]string{}}
	c.functions()
	if err := c.data(); err != nil {
		return c.res, err
	}
	if err := c.keepChanged(); err != nil {
		return nil, err
	}
	sort.SliceStable(c.res.Funcs, func(i, j int) bool { return c.res.Funcs[i].Name < c.res.Funcs[j].Name })
	return c.res, nil
}

// checkOneFunctionPerSection refuses an object compiled without
// -ffunction-sections: a section holding several functions.
func (s *side) checkOneFunctionPerSection() error {
	for si, its := range s.bySec {
		nf := 0
		for _, it := range its {
			if it.fn {
				nf++
			}
		}
		if nf > 1 {
			return fmt.Errorf("%w: section %s holds %d functions", ErrNeedSections, s.o.sec(si).Name, nf)
		}
	}
	return nil
}

// comparison is one compare of the old side with the new: what it has found
// so far.
type comparison struct {
	olds, ns *side
	res      *Result
	status   map[*item]Status // of the new side's functions
	renames  map[int]string   // new symbol index -> the name it takes in the patch
}

// groupOf returns the key of the function group an item belongs to: its
// parent's for a split part, its own otherwise.
func groupOf(it *item) string {
	if p := parentOf(it); p != "" {
		return p
	}
	return it.key
}

// dataKind names a data item as Data.Kind does.
func dataKind(it *item) string {
	if it.ro {
		return "constant"
	}
	return "variable"
}

// functions finds the changed and new functions, grouped with their split
// parts (one changed part makes the whole group changed), and the removed
// ones.
func (c *comparison) functions() {
	olds, ns := c.olds, c.ns
	groupChanged := map[string]bool{}
	for _, it := range ns.items {
		if !it.fn {
			continue
		}
		old := olds.byKey[it.key]
		switch {
		case old == nil || !old.fn:
			c.status[it] = New
		case equalSig(olds, old, ns, it):
			c.status[it] = Unchanged
		default:
			c.status[it] = Changed
		}
		if c.status[it] != Unchanged {
			groupChanged[groupOf(it)] = true
		}
	}
	for _, it := range ns.items {
		if !it.fn {
			continue
		}
		if c.status[it] == Unchanged && groupChanged[groupOf(it)] {
			c.status[it] = Changed
		}
		c.res.Funcs = append(c.res.Funcs, c.function(it))
	}
	for _, it := range olds.items {
		if it.fn && ns.byKey[it.key] == nil {
			c.res.Funcs = append(c.res.Funcs, Func{Name: it.name, Status: Removed, Size: it.size})
		}
	}
}

// function describes the new side's function it, whose status is decided.
func (c *comparison) function(it *item) Func {
	olds, ns := c.olds, c.ns
	f := Func{Name: it.name, Local: elf.ST_BIND(ns.o.syms[it.sym].Info) == elf.STB_LOCAL, Status: c.status[it], Size: it.size}
	if p := parentOf(it); p != "" {
		f.Part = strings.TrimPrefix(p, "F:")
		if ns.byKey[p] != nil {
			f.Part = ns.byKey[p].name
		}
	}
	if old := olds.byKey[it.key]; old != nil && old.fn {
		if old.name != it.name {
			c.renames[it.sym] = old.name
			f.Name, f.NewName = old.name, it.name
		}
		if f.Status == Changed {
			f.Orig, f.OrigMask = olds.runPre(old)
		}
	}
	return f
}

// data compares the data items and string literals. Thread-local variables
// are variables like the others: an existing one is the process's (every
// thread keeps its value), a change of its initial value or size is refused;
// a new one cannot be added at all. The error, if any, comes after every
// item is in c.res.
func (c *comparison) data() error {
	olds, ns := c.olds, c.ns
	var refused, newTLS []string
	for _, it := range ns.items {
		if it.fn {
			continue
		}
		d := c.datum(it)
		if d.Status == New && it.tls {
			newTLS = append(newTLS, it.name)
		}
		if d.Reason != "" {
			refused = append(refused, fmt.Sprintf("%s (%s)", d.Name, d.Reason))
		}
		c.res.Data = append(c.res.Data, d)
	}
	for _, it := range olds.items {
		if !it.fn && ns.byKey[it.key] == nil {
			c.res.Data = append(c.res.Data, Data{Name: it.name, Kind: dataKind(it), Status: Removed, Size: it.size})
		}
	}
	oldStr := olds.stringSet()
	for _, str := range ns.strings() {
		st := Unchanged
		if !oldStr[str] {
			st = New
		}
		c.res.Data = append(c.res.Data, Data{Name: fmt.Sprintf("%q", str), Kind: "string", Status: st, Size: uint64(len(str) + 1)})
	}
	if len(newTLS) > 0 {
		return fmt.Errorf("%w: %s: the threads of a running process have their thread-local storage allocated already; keep the fix to the existing thread-local variables, or use a global protected by a lock",
			ErrNewTLS, strings.Join(newTLS, ", "))
	}
	if len(refused) > 0 {
		return fmt.Errorf("%w: %s: the running process already holds its current value, which a patch cannot change; initialise it in code instead, or restart the program",
			ErrLiveData, strings.Join(refused, "; "))
	}
	return nil
}

// datum describes the new side's data item it; a Reason is set on a changed
// variable, which the patch cannot change.
func (c *comparison) datum(it *item) Data {
	olds, ns := c.olds, c.ns
	d := Data{Name: it.name, Kind: dataKind(it), Size: it.size}
	old := olds.byKey[it.key]
	// Read-only keys include the content (targetKey), items' keys do not:
	// compare by name key and then content.
	switch {
	case old == nil || old.fn:
		d.Status = New
		if elf.ST_BIND(ns.o.syms[it.sym].Info) == elf.STB_LOCAL && !it.ro {
			// A new static must never bind to a same-named static of
			// another file of the target: give it a name no target has.
			c.renames[it.sym] = it.name + ".hotpatch"
		}
		return d
	case equalSig(olds, old, ns, it):
		d.Status = Unchanged
	default:
		d.Status = Changed
	}
	if old.name != it.name {
		c.renames[it.sym] = old.name
		d.Name = old.name
	}
	if d.Status == Changed && !it.ro {
		if old.size != it.size {
			d.Reason = fmt.Sprintf("its size changes from %d to %d bytes", old.size, it.size)
		} else {
			d.Reason = "its initial value changes"
		}
	}
	return d
}

// keepChanged makes the patch object: the new object with its changed and
// new functions only, symbols renamed.
func (c *comparison) keepChanged() error {
	var drop []*item
	for _, it := range c.ns.items {
		if it.fn && c.status[it] == Unchanged {
			drop = append(drop, it)
		}
	}
	obj, err := rewrite(c.ns.o, drop, c.renames)
	if err != nil {
		return err
	}
	if c.res.Object, err = compact(obj); err != nil {
		return err
	}
	return nil
}

// runPre returns a function's bytes with every byte a relocation will write
// masked (mask 0): the parts OLD.o can predict of the running code.
func (s *side) runPre(it *item) (code, mask []byte) {
	b, _ := s.o.bytesOf(s.o.sec(it.sec), it.val, it.size)
	code = append([]byte(nil), b...)
	mask = bytes.Repeat([]byte{0xff}, len(code))
	for _, r := range s.relsIn(it) {
		// The field, and the bytes around it that the static linker may
		// have rewritten when it relaxed the instruction (a GOT load into a
		// lea, initial-exec TLS into local-exec, ...).
		n, before, after := 8, 0, 0 // unknown relocation types: mask the widest field
		if ri, err := s.a.RelocInfo(r.typ); err == nil {
			n, before, after = ri.Size, ri.RelaxBefore, ri.RelaxAfter
		}
		lo := int64(r.off-it.val) - int64(before)
		hi := int64(r.off-it.val) + int64(n+after)
		for k := max(lo, 0); k < hi && k < int64(len(mask)); k++ {
			mask[k], code[k] = 0, 0
		}
	}
	return code, mask
}

// strings returns the string literals of the object's mergeable string sections.
func (s *side) strings() []string {
	var out []string
	seen := map[string]bool{}
	for _, sec := range s.o.f.Sections {
		if sec.Flags&elf.SHF_STRINGS == 0 || sec.Flags&elf.SHF_ALLOC == 0 || sec.Type != elf.SHT_PROGBITS {
			continue
		}
		b, ok := s.o.bytesOf(sec, 0, sec.Size)
		if !ok || sec.Entsize > 1 {
			continue
		}
		for _, str := range strings.Split(strings.TrimRight(string(b), "\x00"), "\x00") {
			if !seen[str] {
				seen[str] = true
				out = append(out, str)
			}
		}
	}
	return out
}

func (s *side) stringSet() map[string]bool {
	m := map[string]bool{}
	for _, str := range s.strings() {
		m[str] = true
	}
	return m
}
