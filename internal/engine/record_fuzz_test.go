package engine

import (
	"testing"

	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/record"
)

// FuzzCheckRecord: a record read from a target (decoded, then checked
// against its region and the process's code) never panics, and what passes
// only claims jumps inside the process's file-backed code and new code
// inside its own region, whatever bytes the target holds.
func FuzzCheckRecord(f *testing.F) {
	const base, size = 0x7f0000000000, 3 * 4096
	maps := []procmaps.Mapping{
		{Start: 0x400000, End: 0x401000, Perms: "r--p", Inode: 7, Path: "/usr/bin/x"},
		{Start: 0x401000, End: 0x402000, Perms: "r-xp", Offset: 0x1000, Inode: 7, Path: "/usr/bin/x"},
		{Start: base, End: base + size, Perms: "r-xs", Inode: 9, Path: "/memfd:hotpatch:hp-1", Deleted: true},
	}
	good := &record.Record{ID: "hp-1", Target: "/usr/bin/x", BuildID: "ab", Base: base, Size: size, TextStart: base + 4096, TextEnd: base + 4200,
		Redirects: []record.Redirect{{Func: "f", Addr: 0x401004, Entry: 0x401000, New: base + 4096,
			Orig: []byte{1, 2, 3, 4, 5}, Jump: []byte{0xe9, 0, 0, 0, 0}, Kind: "jmp rel32"}}}
	b, err := record.Encode(good, record.StateApplied)
	if err != nil {
		f.Fatal(err)
	}
	if r, _, err := record.Decode(b); err != nil || checkRecord(r, "hp-1", base, size, maps) != nil {
		f.Fatalf("the good record does not pass: %v", err)
	}
	f.Add(b)
	// A jump whose end wraps around the address space.
	wrap := *good
	wrap.Redirects = []record.Redirect{good.Redirects[0]}
	wrap.Redirects[0].Addr = ^uint64(0) - 1
	if b, err := record.Encode(&wrap, record.StateApplied); err == nil {
		f.Add(b)
		if r, _, err := record.Decode(b); err == nil && checkRecord(r, "hp-1", base, size, maps) == nil {
			f.Fatal("a jump wrapping around the address space passed")
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, _, err := record.Decode(b)
		if err != nil || checkRecord(r, "hp-1", base, size, maps) != nil {
			return
		}
		for _, rd := range r.Redirects {
			if rd.New < base || rd.New >= base+size || rd.Addr < 0x401000 || rd.Addr >= 0x402000 || uint64(len(rd.Jump)) > 0x402000-rd.Addr {
				t.Fatalf("accepted a redirect outside the code or the region: %+v", rd)
			}
		}
		if r.Size > size || r.ID != "hp-1" {
			t.Fatalf("accepted %+v", r)
		}
	})
}
