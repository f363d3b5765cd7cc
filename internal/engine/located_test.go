package engine

import (
	"errors"
	"testing"

	"github.com/hotpatch/hotpatch/internal/linker"
	"github.com/hotpatch/hotpatch/internal/patchfile"
)

// TestLocatedTLSRefused: a located symbol is an address in the patched
// file; a thread-local variable of the patch is reached through a TLS
// offset, which no located address gives, so binding one to it is refused
// before the manifest's address is even looked at.
func TestLocatedTLSRefused(t *testing.T) {
	r := &resolver{located: []patchfile.Symbol{{Name: "v", Addr: 0x4010, Size: 4, Kind: patchfile.SymbolVariable, Match: patchfile.MatchRunPre}}}
	for _, kind := range []string{patchfile.SymbolVariable, ""} {
		res, err := r.locatedRes(linker.SymbolRef{Name: "v", Size: 4, TLS: true, Defined: kind != ""}, kind)
		if !errors.Is(err, ErrResolve) || res.Found {
			t.Fatalf("kind %q: got %+v, %v; want ErrResolve", kind, res, err)
		}
		t.Logf("refused: %v", err)
	}
}
