package unwind

import (
	"debug/elf"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/go-delve/delve/pkg/dwarf/frame"
)

// Range is the code one FDE covers, [Begin, End) at link-time addresses.
type Range struct{ Begin, End uint64 }

// FunctionRanges returns the ranges of every FDE of f's .eh_frame, sorted
// and without duplicates: a stripped file's function boundaries (GCC emits
// one FDE per function, and one per .cold part, unless built with
// -fno-asynchronous-unwind-tables). A file without .eh_frame gives none.
// Hostile input cannot panic the caller.
func FunctionRanges(f *elf.File) (out []Range, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("parse .eh_frame: %v", r)
		}
	}()
	s := f.Section(".eh_frame")
	if s == nil || s.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	data, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("read .eh_frame: %w", err)
	}
	ptr := 8
	if f.Class == elf.ELFCLASS32 {
		ptr = 4
	}
	return rangesOf(data, f.ByteOrder, ptr, s.Addr)
}

func rangesOf(data []byte, bo binary.ByteOrder, ptr int, addr uint64) (_ []Range, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parse .eh_frame: %v", r)
		}
	}()
	fdes, err := frame.Parse(data, bo, 0, ptr, addr)
	if err != nil {
		return nil, fmt.Errorf("parse .eh_frame: %w", err)
	}
	out := make([]Range, 0, len(fdes))
	for _, fde := range fdes {
		if fde.End() > fde.Begin() {
			out = append(out, Range{fde.Begin(), fde.End()})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Begin != out[j].Begin {
			return out[i].Begin < out[j].Begin
		}
		return out[i].End < out[j].End
	})
	k := 0
	for i, r := range out {
		if i == 0 || r != out[k-1] {
			out[k] = r
			k++
		}
	}
	return out[:k], nil
}
