package elfsym

import (
	"debug/elf"
	"encoding/binary"
)

// PatchableEntries returns the link-time addresses listed in the file's
// __patchable_function_entries section (GCC's -fpatchable-function-entry:
// the start of each function's patch area, see docs/patch-ready.md). The
// section holds one pointer per function; in a PIE its words are zero and
// covered by R_X86_64_RELATIVE relocations whose addends hold the
// addresses. A file without the section gives an empty set.
func (f *File) PatchableEntries() (_ map[uint64]bool, err error) {
	defer guard(&err, "read __patchable_function_entries")
	out := map[uint64]bool{}
	sec := f.f.Section("__patchable_function_entries")
	if sec == nil || sec.Type != elf.SHT_PROGBITS {
		return out, nil
	}
	data, err := f.readAt(sec.Offset, sec.Size)
	if err != nil {
		return nil, err
	}
	var addends map[uint64]int64
	for off := 0; off+8 <= len(data); off += 8 {
		v := binary.LittleEndian.Uint64(data[off:])
		if v == 0 {
			if addends == nil {
				addends = map[uint64]int64{}
				if rels, err := f.DynRelocs(); err == nil {
					for _, r := range rels {
						addends[r.Offset] = r.Addend
					}
				}
			}
			v = uint64(addends[sec.Addr+uint64(off)])
		}
		if v != 0 {
			out[v] = true
		}
	}
	return out, nil
}
