package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Summary summarises a sample of durations. Percentiles use the
// nearest-rank method: p99 of 50 samples is the largest one.
type Summary struct {
	N      int           `json:"n"`
	Median time.Duration `json:"median_ns"`
	P90    time.Duration `json:"p90_ns"`
	P99    time.Duration `json:"p99_ns"`
	Max    time.Duration `json:"max_ns"`
	Min    time.Duration `json:"min_ns"`
}

func summarize(ds []time.Duration) Summary {
	if len(ds) == 0 {
		return Summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Summary{N: len(s), Median: percentile(s, 50), P90: percentile(s, 90), P99: percentile(s, 99),
		Max: s[len(s)-1], Min: s[0]}
}

// percentile returns the p-th percentile (nearest rank) of sorted s.
func percentile[T any](s []T, p float64) T {
	rank := int(float64(len(s))*p/100 + 0.999999999)
	rank = max(1, min(rank, len(s)))
	return s[rank-1]
}

// medianFloat returns the median of xs (the upper one for an even count).
func medianFloat(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// memInfo is a process's resident memory, from /proc/PID/smaps_rollup
// (proc(5)), in KiB.
type memInfo struct {
	Rss      int64 `json:"rss_kib"`
	Pss      int64 `json:"pss_kib"`
	RssAnon  int64 `json:"anon_kib"`
	RssShmem int64 `json:"shmem_kib"`
}

// readMem reads /proc/PID/smaps_rollup and /proc/PID/status.
func readMem(pid int) (memInfo, error) {
	var m memInfo
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, fmt.Errorf("memory of %d: %w", pid, err)
	}
	kv, err := parseKiB(f)
	f.Close()
	if err != nil {
		return m, fmt.Errorf("smaps_rollup of %d: %w", pid, err)
	}
	m.Rss, m.Pss = kv["Rss"], kv["Pss"]
	f, err = os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, fmt.Errorf("status of %d: %w", pid, err)
	}
	kv, err = parseKiB(f)
	f.Close()
	if err != nil {
		return m, fmt.Errorf("status of %d: %w", pid, err)
	}
	m.RssAnon, m.RssShmem = kv["RssAnon"], kv["RssShmem"]
	return m, nil
}

// parseKiB parses the "Name:   1234 kB" lines of /proc/PID/status and
// smaps_rollup; other lines are skipped.
func parseKiB(r io.Reader) (map[string]int64, error) {
	out := map[string]int64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			continue
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("line %q: bad size", sc.Text())
		}
		out[name] = v
	}
	return out, sc.Err()
}

// statLine is one "stat k=v ..." line of the torture target.
type statLine struct {
	Calls, Old, New, Wrong, SysErr uint64
	Threads                        int
	Mono                           int64
}

// parseStat parses a torture target's stat line.
func parseStat(l string) (statLine, bool) {
	var s statLine
	f := strings.Fields(l)
	if len(f) != 8 || f[0] != "stat" {
		return s, false
	}
	for _, kv := range f[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return s, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return s, false
		}
		switch k {
		case "calls":
			s.Calls = uint64(n)
		case "old":
			s.Old = uint64(n)
		case "new":
			s.New = uint64(n)
		case "wrong":
			s.Wrong = uint64(n)
		case "syserr":
			s.SysErr = uint64(n)
		case "threads":
			s.Threads = int(n)
		case "mono":
			s.Mono = n
		default:
			return s, false
		}
	}
	return s, true
}

// parseCallsPerSec parses the overhead target's "calls/s N X" line.
func parseCallsPerSec(l string) (float64, bool) {
	f := strings.Fields(l)
	if len(f) != 3 || f[0] != "calls/s" {
		return 0, false
	}
	v, err := strconv.ParseFloat(f[1], 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		return 0, false
	}
	return v, true
}
