package proc

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// The parsers in this file read text produced by the kernel under /proc. They
// do not trust it blindly (a process can rename itself to anything, which ends
// up inside /proc/PID/stat), and they turn any panic into an error.

// pfKthread is PF_KTHREAD from include/linux/sched.h: the task is a kernel thread.
const pfKthread = 0x00200000

// statInfo is what we need from /proc/PID/stat (proc_pid_stat(5)).
type statInfo struct {
	State byte   // field 3: R, S, D, T, t, Z, X, ...
	Flags uint64 // field 9: PF_* flags
	// StartTime is field 22, the time the task started after boot in clock
	// ticks; 0 when the line is too short to have it.
	StartTime uint64
}

// parseStat parses /proc/PID/stat or /proc/PID/task/TID/stat. The comm field
// (2) is in parentheses and may itself contain spaces and parentheses, so
// the fields after it are found after the *last* ')'.
func parseStat(data []byte) (si statInfo, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parse stat: panic: %v", r)
		}
	}()
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return si, fmt.Errorf("parse stat: no ')' after comm")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state), f[6] is field 9 (flags).
	if len(f) < 7 || len(f[0]) != 1 {
		return si, fmt.Errorf("parse stat: %d fields after comm", len(f))
	}
	// The state is one ASCII letter (R, S, D, T, t, Z, X, I, ...); anything
	// else (a NUL, which strings.Fields keeps) is not a state.
	if c := f[0][0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
		return si, fmt.Errorf("parse stat: state %q is not a letter", c)
	}
	si.State = f[0][0]
	si.Flags, err = strconv.ParseUint(f[6], 10, 64)
	if err != nil {
		return si, fmt.Errorf("parse stat flags: %w", err)
	}
	if len(f) > 19 {
		if si.StartTime, err = strconv.ParseUint(f[19], 10, 64); err != nil {
			return si, fmt.Errorf("parse stat start time: %w", err)
		}
	}
	return si, nil
}

// statusInfo is what we need from /proc/PID/status.
type statusInfo struct {
	State     byte
	TracerPid int
	Name      string
}

// parseStatus parses /proc/PID/status ("Key:\tvalue" lines).
func parseStatus(data []byte) (si statusInfo, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parse status: panic: %v", r)
		}
	}()
	seenTracer := false
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			si.Name = v
		case "State":
			if v == "" {
				return si, fmt.Errorf("parse status: empty State")
			}
			si.State = v[0]
		case "TracerPid":
			n, err := strconv.Atoi(v)
			if err != nil {
				return si, fmt.Errorf("parse status TracerPid: %w", err)
			}
			si.TracerPid = n
			seenTracer = true
		}
	}
	if err := sc.Err(); err != nil {
		return si, fmt.Errorf("parse status: %w", err)
	}
	if !seenTracer {
		return si, fmt.Errorf("parse status: no TracerPid line")
	}
	return si, nil
}

// mapping is one line of /proc/PID/maps, reduced to what the syscall
// instruction search needs.
type mapping struct {
	Start, End uint64
	Perms      string
	Path       string
	// File is "offset dev inode" of a file-backed mapping ("" for an
	// anonymous one): what the mapping shows of the file (gadgetcache.go).
	File string
}

// parseMaps parses /proc/PID/maps (proc_pid_maps(5)):
//
//	start-end perms offset dev inode [path]
func parseMaps(data []byte) (ms []mapping, err error) {
	defer func() {
		if r := recover(); r != nil {
			ms, err = nil, fmt.Errorf("parse maps: panic: %v", r)
		}
	}()
	for n, line := range strings.Split(string(data), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 5 {
			return nil, fmt.Errorf("parse maps line %d: %d fields", n+1, len(f))
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("parse maps line %d: bad range %q", n+1, f[0])
		}
		var m mapping
		if m.Start, err = strconv.ParseUint(lo, 16, 64); err != nil {
			return nil, fmt.Errorf("parse maps line %d: %w", n+1, err)
		}
		if m.End, err = strconv.ParseUint(hi, 16, 64); err != nil {
			return nil, fmt.Errorf("parse maps line %d: %w", n+1, err)
		}
		if m.End < m.Start {
			return nil, fmt.Errorf("parse maps line %d: end before start", n+1)
		}
		m.Perms = f[1]
		if f[4] != "0" {
			m.File = f[2] + " " + f[3] + " " + f[4]
		}
		if len(f) >= 6 {
			m.Path = strings.Join(f[5:], " ")
		}
		ms = append(ms, m)
	}
	return ms, nil
}
