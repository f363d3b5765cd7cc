package engine

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/build"
	"github.com/hotpatch/hotpatch/internal/patchfile"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// withFunctions re-assembles p with another function list, as a patch
// author (or anyone, for an unsigned patch) could write it.
func withFunctions(t *testing.T, p *patchfile.Patch, fns []patchfile.Function) *patchfile.Patch {
	t.Helper()
	var members []patchfile.NamedData
	for _, m := range p.Members {
		members = append(members, patchfile.NamedData{Name: m.Name, Kind: m.Kind, Data: p.Member(m.Name)})
	}
	man := p.Manifest
	man.Functions = fns
	q, err := patchfile.New(man, members)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func pairLine(want string) func(string) bool { return func(l string) bool { return l == want } }

// TestAliases: a fix of a function with two names (an alias at the same
// address) is one redirect, whether the build merged the names or an older
// manifest lists both; revert works and status names the destination that
// is really there. A fix giving the two names different code is refused by
// build and by apply (issue 11 item 5: revert failed forever).
func TestAliases(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "alias.c")
	p := buildPatch(t, bin, compileObj(t, dir, "alias_new.c"))
	if len(p.Functions) != 1 || p.Functions[0].Name != "impl" {
		t.Fatalf("build did not merge the aliases into impl (the name of its section): %+v", p.Functions)
	}
	both := p.Functions[0]
	other := both
	other.Name = "alias_fn"
	old := withFunctions(t, p, []patchfile.Function{both, other})

	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 5*time.Second, pairLine("1 1"))
	for _, q := range []*patchfile.Patch{p, old} {
		rep, err := Apply(tg.Pid, q, Options{Consistency: ConsistencyEntry})
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		if len(rep.Functions) != 1 || rep.Functions[0].Name != "impl" || strings.Join(rep.Functions[0].Aliases, ",") != "alias_fn" {
			t.Fatalf("apply report: %+v", rep.Functions)
		}
		tg.Drain()
		tg.WaitLine(t, 2*time.Second, pairLine("1001 1001"))
		st, err := Status(tg.Pid)
		var applied []PatchStatus
		for _, ps := range st.Patches {
			if ps.StateName == "applied" {
				applied = append(applied, ps)
			}
		}
		if err != nil || len(applied) != 1 || len(applied[0].Redirects) != 1 || applied[0].Redirects[0].New != rep.Functions[0].New {
			t.Fatalf("status: %+v %v", st, err)
		}
		if _, err := Revert(tg.Pid, q.ID, Options{Consistency: ConsistencyEntry}); err != nil {
			t.Fatalf("revert: %v", err)
		}
		tg.Drain()
		tg.WaitLine(t, 2*time.Second, pairLine("1 1"))
	}

	split := compileObj(t, dir, "alias_split_new.c")
	if _, _, err := build.ByName(build.Options{Target: bin, New: []string{split}}); !errors.Is(err, build.ErrUnsafeTarget) {
		t.Fatalf("build of aliases with different code: %v", err)
	}
	// The same, hand-made: both names with their own code.
	impl, alias := both, other
	q := withFunctions(t, p, []patchfile.Function{impl, alias})
	sp := buildPatchObjs(t, bin, split, q)
	before, _ := Status(tg.Pid)
	if _, err := Apply(tg.Pid, sp, Options{Consistency: ConsistencyEntry}); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("apply of aliases with different code: %v", err)
	}
	// (A region earlier reverts kept may have been freed meanwhile.)
	if st, _ := Status(tg.Pid); len(st.Patches) > len(before.Patches) || (len(st.Patches) > 0 && st.Patches[len(st.Patches)-1].StateName != "reverted") {
		t.Fatalf("refused apply left %+v", st.Patches)
	}
	if s := tg.Stderr(); s != "" {
		t.Fatal(s)
	}
}

// buildPatchObjs is q with its one object member replaced by obj's bytes.
func buildPatchObjs(t *testing.T, bin, obj string, q *patchfile.Patch) *patchfile.Patch {
	t.Helper()
	data, err := os.ReadFile(obj)
	if err != nil {
		t.Fatal(err)
	}
	var members []patchfile.NamedData
	for _, m := range q.Members {
		members = append(members, patchfile.NamedData{Name: m.Name, Kind: m.Kind, Data: data})
	}
	r, err := patchfile.New(q.Manifest, members)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestManifestAddressesChecked: apply refuses, before touching the process,
// a manifest whose function starts mid-instruction or inside another
// function, or whose functions overlap (issue 11 item 7: such unsigned
// patches were applied).
func TestManifestAddressesChecked(t *testing.T) {
	dir := setup(t)
	nbin := compileTarget(t, dir, "nested.c")
	nobj := compileObj(t, dir, "nested_new.c")
	ng := testutil.Start(t, nbin)
	ng.WaitLine(t, 5*time.Second, pairLine("1 2"))
	nested := func(names ...string) *patchfile.Patch {
		q, _, err := build.ByName(build.Options{Target: nbin, New: []string{nobj}})
		if err != nil {
			t.Fatal(err)
		}
		var fns []patchfile.Function
		for _, f := range q.Functions {
			for _, n := range names {
				if f.Name == n {
					fns = append(fns, f)
				}
			}
		}
		return withFunctions(t, q, fns)
	}
	// Hand-made manifests (build refuses to decode these): outer's entry
	// moved by delta, with run-pre bytes dropped.
	moved := func(delta, size uint64) *patchfile.Patch {
		q := nested("outer")
		f := q.Functions[0]
		f.Addr, f.Size, f.Orig, f.OrigMask = f.Addr+delta, size, nil, nil
		return withFunctions(t, q, []patchfile.Function{f})
	}
	for _, c := range []struct {
		name string
		p    *patchfile.Patch
		want string
	}{
		{"inside a function", moved(1, 14), "lies 0x1 bytes into outer"},
		{"mid-instruction symbol", moved(2, 8), "not an instruction boundary of outer"},
		{"larger than the symbol", moved(0, 64), "is 15 bytes, not 64"},
		{"overlap", nested("inner", "outer"), "overlap"},
	} {
		_, err := Apply(ng.Pid, c.p, Options{Consistency: ConsistencyEntry})
		if !errors.Is(err, ErrBadAddress) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrBadAddress (%s)", c.name, err, c.want)
		}
		if st, _ := Status(ng.Pid); len(st.Patches) != 0 {
			t.Fatalf("%s: refused apply left %+v", c.name, st.Patches)
		}
	}
	// What the checks accept: a function enclosed by another, starting on
	// an instruction boundary. (outer runs on into inner's bytes, so it
	// takes the new inner too.)
	if _, err := Apply(ng.Pid, nested("inner"), Options{Consistency: ConsistencyEntry}); err != nil {
		t.Fatalf("inner: %v", err)
	}
	ng.Drain()
	ng.WaitLine(t, 2*time.Second, pairLine("2001 2002"))
}
