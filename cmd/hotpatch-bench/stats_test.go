package main

import (
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	seq := func(n int) []int {
		var out []int
		for i := n; i >= 1; i-- { // reversed: summarize must sort
			out = append(out, i)
		}
		return out
	}
	for _, tc := range []struct {
		name                   string
		in                     []time.Duration
		median, p90, p99, maxv time.Duration
	}{
		{"empty", nil, 0, 0, 0, 0},
		{"one", ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{"two", ms(2, 1), 1 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond},
		// Nearest rank: p50 of 1..50 is the 25th, p99 the 50th.
		{"fifty", ms(seq(50)...), 25 * time.Millisecond, 45 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond},
		{"hundred", ms(seq(100)...), 50 * time.Millisecond, 90 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := summarize(tc.in)
			if s.N != len(tc.in) || s.Median != tc.median || s.P90 != tc.p90 || s.P99 != tc.p99 || s.Max != tc.maxv {
				t.Errorf("summarize = %+v, want median %v p90 %v p99 %v max %v", s, tc.median, tc.p90, tc.p99, tc.maxv)
			}
		})
	}
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		line string
		ok   bool
		want statLine
	}{
		{"stat calls=10 old=7 new=3 wrong=0 syserr=0 threads=64 mono=123", true,
			statLine{Calls: 10, Old: 7, New: 3, Threads: 64, Mono: 123}},
		{"stat calls=1 old=1 new=0 wrong=2 syserr=5 threads=2 mono=9", true,
			statLine{Calls: 1, Old: 1, Wrong: 2, SysErr: 5, Threads: 2, Mono: 9}},
		{"ready 64", false, statLine{}},
		{"stat calls=10 old=7 new=3 wrong=0 syserr=0 threads=64", false, statLine{}},
		{"stat calls=-1 old=7 new=3 wrong=0 syserr=0 threads=64 mono=1", false, statLine{}},
		{"stat calls=1 old=7 new=3 wrong=0 syserr=0 bogus=64 mono=1", false, statLine{}},
		{"stat calls=x old=7 new=3 wrong=0 syserr=0 threads=64 mono=1", false, statLine{}},
	} {
		got, ok := parseStat(tc.line)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseCallsPerSec(t *testing.T) {
	for _, tc := range []struct {
		line string
		want float64
		ok   bool
	}{
		{"calls/s 608252682 1", 608252682, true},
		{"calls/s 1.5e9 0", 1.5e9, true},
		{"calls/s 0 0", 0, false},
		{"calls/s NaN 0", 0, false},
		{"calls/s +Inf 0", 0, false},
		{"calls/s 5", 0, false},
		{"ready 1", 0, false},
	} {
		got, ok := parseCallsPerSec(tc.line)
		if ok != tc.ok || got != tc.want {
			t.Errorf("parseCallsPerSec(%q) = %v, %v; want %v, %v", tc.line, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseKiB(t *testing.T) {
	const status = `Name:	bench
VmRSS:	    1234 kB
RssAnon:	     100 kB
RssShmem:	       8 kB
Threads:	1
Cpus_allowed_list:	0-1
`
	kv, err := parseKiB(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]int64{"VmRSS": 1234, "RssAnon": 100, "RssShmem": 8} {
		if kv[k] != want {
			t.Errorf("%s = %d, want %d", k, kv[k], want)
		}
	}
	if _, ok := kv["Threads"]; ok {
		t.Errorf("Threads (no unit) parsed as a size")
	}
	if _, err := parseKiB(strings.NewReader("Rss: -5 kB\n")); err == nil {
		t.Errorf("negative size accepted")
	}
}

// The parsers read what other processes write (/proc files, the targets'
// output): they must never panic and must reject rather than misread.
func FuzzParsers(f *testing.F) {
	for _, s := range []string{
		"stat calls=10 old=7 new=3 wrong=0 syserr=0 threads=64 mono=123",
		"calls/s 608252682 1",
		"Rss:  1234 kB\nPss: 12 kB\n",
		"VmRSS:\t 1 kB",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if st, ok := parseStat(s); ok && !strings.HasPrefix(s, "stat") {
			t.Errorf("parseStat accepted %q as %+v", s, st)
		}
		if v, ok := parseCallsPerSec(s); ok && !(v > 0) {
			t.Errorf("parseCallsPerSec(%q) = %v", s, v)
		}
		if kv, err := parseKiB(strings.NewReader(s)); err == nil {
			for k, v := range kv {
				if v < 0 {
					t.Errorf("parseKiB: %s = %d", k, v)
				}
			}
		}
	})
}
