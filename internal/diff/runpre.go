package diff

import (
	"debug/elf"
	"fmt"
	"sort"
	"strings"
)

// Functions returns every function defined in one object with its run-pre
// bytes (Orig, OrigMask: the code with the bytes under relocations masked),
// and the object's source file name (STT_FILE). It is how a build from
// source proves, before any process is touched, that the objects it rebuilt
// are the code that runs: each function's bytes must match the target's
// under the mask. Status is Unchanged for all of them; Part names the
// function a split part (foo.cold) belongs to.
func Functions(obj []byte) (_ []Func, file string, err error) {
	o, err := parse(obj)
	if err != nil {
		return nil, "", err
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: malformed ELF object: %v", ErrBadObject, r)
		}
	}()
	s, err := newSide(o)
	if err != nil {
		return nil, "", err
	}
	var out []Func
	for _, it := range s.items {
		if !it.fn {
			continue
		}
		f := Func{Name: it.name, Local: elf.ST_BIND(o.syms[it.sym].Info) == elf.STB_LOCAL, Status: Unchanged, Size: it.size}
		if parentOf(it) != "" {
			f.Part = strings.TrimSuffix(it.name, ".cold")
		}
		f.Orig, f.OrigMask = s.runPre(it)
		f.Refs = s.refs(it)
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, o.file, nil
}

// refs lists the relocations of function it with what they refer to.
func (s *side) refs(it *item) []Ref {
	var out []Ref
	for _, r := range s.relsIn(it) {
		ref := Ref{Off: r.off - it.val, Type: r.typ, Addend: r.addend}
		sy := s.o.syms[r.sym]
		switch d := s.referenced(r); {
		case d != nil:
			ref.Target, ref.TargetFunc = d.name, d.fn
			ref.TargetLocal = elf.ST_BIND(s.o.syms[d.sym].Info) == elf.STB_LOCAL
			if s.bySym[int(r.sym)] != d {
				ref.Addend -= int64(d.val) // through a section symbol
			}
		case r.sym != 0 && sy.Section == elf.SHN_UNDEF:
			ref.Target, ref.Undefined = sy.Name, true
		}
		out = append(out, ref)
	}
	return out
}
