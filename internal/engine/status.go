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
	// StateIncomplete for a region without a valid record.
	StateName string `json:"state"`
	// Problem explains an incomplete region.
	Problem string `json:"problem,omitempty"`
}

// StateIncomplete names a patch region whose record was never completed.
const StateIncomplete = "incomplete"

// InTransition reports whether the patch was left half-way by an interrupted
// hotpatch command; `hotpatch recover` settles it.
func (p PatchStatus) InTransition() bool {
	return p.StateName == StateIncomplete || p.State == record.StateApplying || p.State == record.StateReverting
}

// StatusReport lists the patches of one process.
type StatusReport struct {
	PID     int           `json:"pid"`
	Patches []PatchStatus `json:"patches"`
}

// Status reads the records of every patch region in process pid. It does not
// stop the process.
func Status(pid int) (*StatusReport, error) {
	maps, err := procmaps.Read(pid)
	if err != nil {
		return nil, fmt.Errorf("%w: process %d: %v", proc.ErrNoProcess, pid, err)
	}
	recs, err := readRecords(pid, maps)
	if err != nil {
		return nil, err
	}
	return &StatusReport{PID: pid, Patches: recs}, nil
}

// readRecords finds patch regions by their memfd name and decodes their headers.
func readRecords(pid int, maps []procmaps.Mapping) ([]PatchStatus, error) {
	var out []PatchStatus
	for _, m := range maps {
		if m.Offset != 0 || !strings.HasPrefix(m.Path, "/memfd:"+record.NamePrefix) {
			continue
		}
		r, s, err := readRecord(func(a uint64, b []byte) error { return proc.ReadMem(pid, a, b) }, m.Start)
		if err != nil {
			// hotpatch was interrupted after mapping the region and before its
			// record was written: nothing can point into it yet.
			id := strings.TrimPrefix(m.Path, "/memfd:"+record.NamePrefix)
			size := uint64(0)
			for _, n := range maps {
				if n.Path == m.Path && n.Start >= m.Start && n.Start-m.Start == n.Offset {
					size = max(size, n.End-m.Start)
				}
			}
			out = append(out, PatchStatus{Record: record.Record{ID: id, Base: m.Start, Size: size},
				StateName: StateIncomplete, Problem: err.Error()})
			continue
		}
		out = append(out, PatchStatus{Record: *r, State: s, StateName: s.String()})
	}
	return out, nil
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
