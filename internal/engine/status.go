package engine

import (
	"fmt"
	"strings"

	"github.com/hotpatch/hotpatch/internal/proc"
	"github.com/hotpatch/hotpatch/internal/procmaps"
	"github.com/hotpatch/hotpatch/internal/record"
)

// faultHook lets tests fail a named step of install; always nil outside tests.
var faultHook = func(step string) error { return nil }

// PatchStatus is one patch region found in a process.
type PatchStatus struct {
	record.Record
	State record.State `json:"-"`
	// StateName is State as text ("applied", "reverted", ...), or
	// StateIncomplete for a region whose record was never written, or
	// StateForeign for one whose record does not validate.
	StateName string `json:"state"`
	// Problem explains an incomplete or foreign region.
	Problem string `json:"problem,omitempty"`
	// Kept says why a reverted patch's region is still mapped (see
	// kept.go).
	Kept string `json:"kept,omitempty"`
}

// StateIncomplete names a patch region whose record was never written: its
// header is still zero (or unreadable), as the region is between its mapping
// and the record's write.
const StateIncomplete = "incomplete"

// StateForeign names a region named like a patch region whose record does
// not validate (not one hotpatch wrote, or scribbled on): it is reported and
// otherwise left alone. Anything in the target can create a memfd mapping
// named "hotpatch:...", so a record is believed only when it is consistent
// with the mapping it was found in and with the process's code.
const StateForeign = "foreign"

// InTransition reports whether the patch was left half-way by an interrupted
// hotpatch command; `hotpatch recover` settles it.
func (p PatchStatus) InTransition() bool {
	return p.StateName == StateIncomplete || p.State == record.StateApplying || p.State == record.StateReverting
}

// Foreign reports whether the region's record did not validate.
func (p PatchStatus) Foreign() bool { return p.StateName == StateForeign }

// StatusReport lists the patches of one process.
type StatusReport struct {
	PID     int           `json:"pid"`
	Patches []PatchStatus `json:"patches"`
}

// Status reads the records of every patch region in process pid. It does not
// stop the process.
func Status(pid int) (_ *StatusReport, err error) {
	defer recoverPanic(&err, "status")
	st, _, err := statusMaps(pid)
	return st, err
}

// statusMaps is Status, also returning the maps it read the records from.
func statusMaps(pid int) (*StatusReport, []procmaps.Mapping, error) {
	maps, err := procmaps.Read(pid)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: process %d: %v", proc.ErrNoProcess, pid, err)
	}
	recs, err := readRecords(pid, maps)
	if err != nil {
		return nil, nil, err
	}
	setKept(pid, recs)
	return &StatusReport{PID: pid, Patches: recs}, maps, nil
}

// readRecords finds patch regions by their memfd name and decodes and
// validates their headers (see StateForeign).
func readRecords(pid int, maps []procmaps.Mapping) ([]PatchStatus, error) {
	var out []PatchStatus
	read := func(a uint64, b []byte) error { return proc.ReadMem(pid, a, b) }
	for _, m := range maps {
		if m.Offset != 0 || !strings.HasPrefix(m.Path, "/memfd:"+record.NamePrefix) {
			continue
		}
		id := strings.TrimPrefix(m.Path, "/memfd:"+record.NamePrefix)
		size := regionExtent(maps, m)
		r, s, err := readRecord(read, m.Start)
		if err == nil {
			err = checkRecord(r, id, m.Start, size, maps)
		}
		if err == nil {
			out = append(out, PatchStatus{Record: *r, State: s, StateName: s.String()})
			continue
		}
		ps := PatchStatus{Record: record.Record{ID: id, Base: m.Start, Size: size}, StateName: StateForeign, Problem: err.Error()}
		if headerBlank(read, m.Start) {
			// hotpatch was interrupted after mapping the region and before
			// its record was written: nothing can point into it yet.
			ps.StateName = StateIncomplete
		}
		out = append(out, ps)
	}
	return out, nil
}

// regionExtent is the size of the memfd region that starts with mapping m:
// the mappings of the same memfd that continue it at matching offsets.
func regionExtent(maps []procmaps.Mapping, m procmaps.Mapping) uint64 {
	size := uint64(0)
	for _, n := range maps {
		if n.Path == m.Path && n.Inode == m.Inode && n.Start >= m.Start && n.Start-m.Start == n.Offset {
			size = max(size, n.End-m.Start)
		}
	}
	return size
}

// headerBlank reports whether the fixed header at base is all zero or cannot
// be read: a region whose record was never written (a fresh memfd reads as
// zeros, memfd_create(2) and ftruncate(2)).
func headerBlank(read func(uint64, []byte) error, base uint64) bool {
	b := make([]byte, record.FixedSize)
	if read(base, b) != nil {
		return true
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// checkRecord checks a decoded record against where it was found: the name
// and extent of its region, its code inside the region, and every redirect
// written into executable file-backed code outside it. A record that fails
// is not hotpatch's (or was scribbled on), and nothing is done on its word.
func checkRecord(r *record.Record, id string, base, size uint64, maps []procmaps.Mapping) error {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: %s", record.ErrBadRecord, fmt.Sprintf(f, a...))
	}
	end := base + size
	switch {
	case r.ID != id:
		return bad("record names patch %q, its region is named %q", r.ID, id)
	case r.Size == 0 || r.Size > size:
		return bad("record says %d bytes, the region maps %d", r.Size, size)
	case r.TextStart > r.TextEnd || (r.TextEnd > r.TextStart && (r.TextStart < base || r.TextEnd > end)):
		return bad("code %#x-%#x outside the region %#x-%#x", r.TextStart, r.TextEnd, base, end)
	}
	inCode := func(a uint64, n int) bool {
		for _, m := range maps {
			if m.FileBacked() && m.Executable() && !strings.HasPrefix(m.Path, "/memfd:") && a >= m.Start && a < m.End && uint64(n) <= m.End-a {
				return true
			}
		}
		return false
	}
	for _, rd := range r.Redirects {
		switch {
		case rd.New < base || rd.New >= end:
			return bad("%s: new code %#x outside the region", rd.Func, rd.New)
		case !inCode(rd.Addr, len(rd.Jump)):
			return bad("%s: jump at %#x is not in the process's file-backed code", rd.Func, rd.Addr)
		case rd.Padded() && !inCode(rd.PadAddr, len(rd.PadJump)):
			return bad("%s: padding jump at %#x is not in the process's file-backed code", rd.Func, rd.PadAddr)
		case rd.HasSlot() && !inCode(rd.SlotAddr, len(rd.SlotJump)):
			return bad("%s: slot jump at %#x is not in the process's file-backed code", rd.Func, rd.SlotAddr)
		}
	}
	return nil
}

func readRecord(read func(uint64, []byte) error, base uint64) (*record.Record, record.State, error) {
	fixed := make([]byte, record.FixedSize)
	if err := read(base, fixed); err != nil {
		return nil, 0, fmt.Errorf("read header: %w", err)
	}
	_, n, err := record.ParseFixed(fixed)
	if err != nil {
		return nil, 0, err
	}
	all := make([]byte, record.FixedSize+n)
	if err := read(base, all); err != nil {
		return nil, 0, fmt.Errorf("read header: %w", err)
	}
	r, s, err := record.Decode(all)
	if err != nil {
		return nil, 0, err
	}
	if r.Base != base {
		return nil, 0, fmt.Errorf("%w: header says base %#x, found at %#x", record.ErrBadRecord, r.Base, base)
	}
	return r, s, nil
}
