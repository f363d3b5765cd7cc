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
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, o.file, nil
}
