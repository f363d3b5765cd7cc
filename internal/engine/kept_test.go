package engine

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hotpatch/hotpatch/internal/record"
	"github.com/hotpatch/hotpatch/internal/testutil"
)

// regionMappings counts the mappings of patch regions in process pid.
func regionMappings(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "/memfd:"+record.NamePrefix)
}

// TestNoLeakedRegions: 50 entry-mode apply/revert cycles while the threads
// are inside the new code. A revert then keeps the region (a thread may
// return into it); the next operation, or status, frees it once no thread
// can, so the number of mappings stays bounded, and status says what is
// kept and why (issue 11 item 6: 600 mappings after 200 cycles).
func TestNoLeakedRegions(t *testing.T) {
	dir := setup(t)
	bin := compileTarget(t, dir, "inside.c")
	p := buildPatch(t, bin, compileObj(t, dir, "inside_new.c"))
	tg := testutil.Start(t, bin)
	tg.WaitLine(t, 5*time.Second, func(l string) bool { return l == "1" })
	opt := Options{Consistency: ConsistencyEntry}
	perRegion := 0
	retained, shown, most := 0, 0, 0
	for i := 0; i < 50; i++ {
		if _, err := Apply(tg.Pid, p, opt); err != nil {
			t.Fatalf("cycle %d: apply: %v", i, err)
		}
		if i == 0 {
			perRegion = regionMappings(t, tg.Pid)
			tg.Drain()
			tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1001" })
		}
		rrep, err := Revert(tg.Pid, p.ID, opt)
		if err != nil {
			t.Fatalf("cycle %d: revert: %v", i, err)
		}
		if !rrep.Freed {
			retained++
			// status right away: the region is either freed or listed as
			// kept, with the reason.
			st, err := StatusFree(tg.Pid, opt)
			if err != nil {
				t.Fatalf("cycle %d: status: %v", i, err)
			}
			for _, ps := range st.Patches {
				if ps.StateName != "reverted" {
					continue
				}
				if !strings.HasPrefix(ps.Kept, "kept") {
					t.Fatalf("cycle %d: status of a kept region: %+v", i, ps)
				}
				if strings.Contains(ps.Kept, "thread") {
					shown++
				}
			}
		}
		most = max(most, regionMappings(t, tg.Pid))
	}
	t.Logf("%d of 50 reverts kept the region; status showed %d kept by a thread; at most %d mappings (%d per region)", retained, shown, most, perRegion)
	if retained < 10 {
		t.Fatalf("only %d of 50 reverts kept their region: the test did not have threads inside the new code", retained)
	}
	if shown == 0 {
		t.Errorf("status never showed a region kept because of a thread")
	}
	if most > 3*perRegion {
		t.Errorf("%d patch-region mappings at one time (%d per region): kept regions leak", most, perRegion)
	}
	// With the patch reverted, status frees what is left once the threads
	// are out (they leave within 2 ms).
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := StatusFree(tg.Pid, opt)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Patches) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status did not free the kept regions: %+v", st.Patches)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := regionMappings(t, tg.Pid); n != 0 {
		t.Fatalf("%d mappings left", n)
	}
	tg.Drain()
	tg.WaitLine(t, 2*time.Second, func(l string) bool { return l == "1" })
	if s := tg.Stderr(); s != "" {
		t.Fatal(s)
	}
}
