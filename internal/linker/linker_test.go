package linker

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hotpatch/hotpatch/internal/arch"
	_ "github.com/hotpatch/hotpatch/internal/arch/amd64"
)

const cflags = "-O2 -ffunction-sections -fdata-sections -c"

var (
	objMu    sync.Mutex
	objCache = map[string][]byte{}
)

// compile compiles C source (a testdata file name or inline code) with gcc
// and returns the object. Results are cached per process.
func compile(t testing.TB, src string, flags ...string) []byte {
	t.Helper()
	key := src + "\x00" + strings.Join(flags, " ")
	objMu.Lock()
	defer objMu.Unlock()
	if b, ok := objCache[key]; ok {
		return b
	}
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	path := filepath.Join("testdata", src)
	if !strings.HasSuffix(src, ".c") {
		path = filepath.Join(dir, "inline.c")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(dir, "obj.o")
	args := append(strings.Fields(cflags), flags...)
	args = append(args, path, "-o", out)
	if msg, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %v: %v\n%s", args, err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	objCache[key] = b
	return b
}

func parse(t testing.TB, src string, flags ...string) *Object {
	t.Helper()
	o, err := ParseObject(compile(t, src, flags...))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// fakeResolver is a map-based Resolver: a unit test of the linking
// arithmetic does not need a process.
type fakeResolver struct {
	addrs map[string]uint64 // undefined symbols
	tls   map[string]int64  // undefined TLS symbols
	mods  map[string]uint64 // TLS module ids (DTPOff = TPOff + 0x1000)
	bind  map[string]uint64 // defined data objects bound to the target
	asked []SymbolRef
}

func (r *fakeResolver) Resolve(ref SymbolRef) (Resolution, error) {
	r.asked = append(r.asked, ref)
	if ref.Defined {
		a, ok := r.bind[ref.Name]
		return Resolution{Found: ok, Addr: a}, nil
	}
	if ref.TLS {
		off, ok := r.tls[ref.Name]
		return Resolution{Found: ok, TPOff: off, TLSModule: r.mods[ref.Name], DTPOff: off + 0x1000}, nil
	}
	a, ok := r.addrs[ref.Name]
	return Resolution{Found: ok, Addr: a}, nil
}

func libcResolver(libc, counter uint64) *fakeResolver {
	return &fakeResolver{
		addrs: map[string]uint64{"snprintf": libc + 0x5e0f0, "strlen": libc + 0x1a2b30, "counter": counter},
		tls:   map[string]int64{"tlsvar": -0x44},
	}
}

type variant struct {
	name  string
	flags []string
}

var variants = []variant{
	{"pie", []string{"-DUSE_TLS"}},
	{"pic", []string{"-fPIC", "-ftls-model=initial-exec", "-DUSE_TLS"}},
	{"nopic", []string{"-fno-pic", "-mcmodel=small", "-DUSE_TLS", "-ftls-model=local-exec"}},
	{"pie-bound", []string{"-DUSE_TLS", "-DDEFINE_COUNTER"}},
}

func TestParseObject(t *testing.T) {
	o := parse(t, "patch.c", "-DUSE_TLS")
	if o.Arch().Name() != "amd64" {
		t.Errorf("Arch = %s", o.Arch().Name())
	}
	if o.SourceFile() != "patch.c" {
		t.Errorf("SourceFile = %q", o.SourceFile())
	}
	var funcs []string
	for _, f := range o.Functions() {
		funcs = append(funcs, fmt.Sprintf("%s/%v/%s", f.Name, f.Local, f.Section))
	}
	if want := "patched/false/.text.patched twice.constprop.0/true/.text.twice.constprop.0"; strings.Join(funcs, " ") != want {
		t.Errorf("Functions = %v, want %s", funcs, want)
	}
	var data []string
	for _, d := range o.Data() {
		data = append(data, fmt.Sprintf("%s/%v/%s/%d", d.Name, d.Local, d.Section, d.Size))
	}
	if want := "calls/true/.bss.calls/4 names/true/.data.rel.ro.local.names/24"; strings.Join(data, " ") != want {
		t.Errorf("Data = %v, want %s", data, want)
	}
	var undef []string
	for _, u := range o.Undefined() {
		undef = append(undef, fmt.Sprintf("%s/%v", u.Name, u.TLS))
	}
	if want := "counter/false snprintf/false strlen/false tlsvar/true"; strings.Join(undef, " ") != want {
		t.Errorf("Undefined = %v, want %s", undef, want)
	}
}

// bases returns two bases for linking a variant so that its Reach and
// NeedsLow constraints hold, and the resolver to use.
func setup(t *testing.T, v variant) (*Object, *fakeResolver, [2]uint64) {
	o := parse(t, "patch.c", v.flags...)
	switch v.name {
	case "nopic":
		return o, libcResolver(0x7f1234560000, 0x404010), [2]uint64{0x10000000, 0x20000000}
	case "pic":
		return o, libcResolver(0x7f1234560000, 0x555555558010), [2]uint64{0x7e0000000000, 0x7e1000000000}
	case "pie-bound":
		r := libcResolver(0x7f1234560000, 0)
		r.bind = map[string]uint64{"counter": 0x555555558010}
		return o, r, [2]uint64{0x555555600000, 0x555555700000}
	}
	return o, libcResolver(0x7f1234560000, 0x555555558010), [2]uint64{0x555555600000, 0x555555700000}
}

// checkRelocs recomputes every relocation of the object independently of
// the linker's arithmetic (from debug/elf's view of the object) and checks the
// image holds it.
func checkRelocs(t *testing.T, p *Prepared, img *Image, r *fakeResolver, data []byte) (ext map[string]int32) {
	t.Helper()
	ext = map[string]int32{}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	syms, _ := f.Symbols()
	read := func(addr uint64, n int) []byte {
		for _, sg := range img.Segments {
			if off := addr - img.Base - sg.Offset; addr >= img.Base+sg.Offset && off < uint64(len(sg.Data)) {
				return sg.Data[off : off+uint64(n)]
			}
		}
		t.Fatalf("address %#x not in image", addr)
		return nil
	}
	secAddr := func(i elf.SectionIndex) uint64 { return p.secLoc[i].addr(img.Base) }
	stubDest := func(addr uint64) (uint64, bool) {
		b := read(addr, 14)
		if !bytes.Equal(b[:6], []byte{0xff, 0x25, 0, 0, 0, 0}) {
			return 0, false
		}
		return binary.LittleEndian.Uint64(b[6:]), true
	}
	n := 0
	for _, s := range f.Sections {
		if s.Type != elf.SHT_RELA || f.Sections[s.Info].Flags&elf.SHF_ALLOC == 0 || strings.Contains(s.Name, "eh_frame") {
			continue
		}
		if p.secLoc[s.Info].abs {
			continue // bound to the target
		}
		rd, _ := s.Data()
		for off := 0; off < len(rd); off += 24 {
			roff := binary.LittleEndian.Uint64(rd[off:])
			info := binary.LittleEndian.Uint64(rd[off+8:])
			addend := int64(binary.LittleEndian.Uint64(rd[off+16:]))
			typ := elf.R_X86_64(uint32(info))
			sym := syms[info>>32-1]
			P := secAddr(elf.SectionIndex(s.Info)) + roff
			var S uint64
			var tpoff int64
			switch {
			case elf.ST_TYPE(sym.Info) == elf.STT_SECTION:
				S = secAddr(sym.Section)
			case sym.Section == elf.SHN_UNDEF && elf.ST_TYPE(sym.Info) == elf.STT_TLS:
				tpoff = r.tls[sym.Name]
			case sym.Section == elf.SHN_UNDEF && sym.Name != gotSymbol:
				S = r.addrs[sym.Name]
			case sym.Section == elf.SHN_UNDEF:
				S = img.Base + p.gotOff // _GLOBAL_OFFSET_TABLE_
			case sym.Section == elf.SHN_COMMON:
				S = img.Symbols[sym.Name]
			default:
				S = secAddr(sym.Section) + sym.Value
				if typ := elf.ST_TYPE(sym.Info); (typ == elf.STT_FUNC || typ == elf.STT_OBJECT) && img.Symbols[sym.Name] != S {
					t.Errorf("Symbols[%s] = %#x, want %#x", sym.Name, img.Symbols[sym.Name], S)
				}
			}
			field32 := func() int64 { return int64(int32(binary.LittleEndian.Uint32(read(P, 4)))) }
			name := fmt.Sprintf("%v at %s+%#x against %s", typ, f.Sections[s.Info].Name, roff, sym.Name)
			n++
			switch typ {
			case elf.R_X86_64_PC32:
				if got := uint64(field32()) + P - uint64(addend); got != S {
					t.Errorf("%s: refers to %#x, want %#x", name, got, S)
				}
				if sym.Section == elf.SHN_UNDEF {
					ext[sym.Name] = int32(field32())
				}
			case elf.R_X86_64_PLT32:
				got := uint64(field32()) + P - uint64(addend)
				if got != S {
					if d, ok := stubDest(got); !ok || d != S {
						t.Errorf("%s: calls %#x (stub to %#x: %v), want %#x", name, got, d, ok, S)
					}
				}
			case elf.R_X86_64_GOTPCREL, elf.R_X86_64_GOTPCRELX, elf.R_X86_64_REX_GOTPCRELX, elf.R_X86_64_GOTTPOFF:
				slot := uint64(field32()) + P - uint64(addend)
				want := S
				if typ == elf.R_X86_64_GOTTPOFF {
					want = uint64(tpoff)
				}
				if got := binary.LittleEndian.Uint64(read(slot, 8)); got != want {
					t.Errorf("%s: GOT slot %#x holds %#x, want %#x", name, slot, got, want)
				}
			case elf.R_X86_64_64:
				if got := binary.LittleEndian.Uint64(read(P, 8)); got != S+uint64(addend) {
					t.Errorf("%s: %#x, want %#x", name, got, S+uint64(addend))
				}
			case elf.R_X86_64_32, elf.R_X86_64_32S:
				got := uint64(binary.LittleEndian.Uint32(read(P, 4)))
				if typ == elf.R_X86_64_32S {
					got = uint64(field32())
				}
				if got != S+uint64(addend) {
					t.Errorf("%s: %#x, want %#x", name, got, S+uint64(addend))
				}
			case elf.R_X86_64_TPOFF32:
				if got := field32(); got != tpoff+addend {
					t.Errorf("%s: %d, want %d", name, got, tpoff+addend)
				}
			default:
				t.Errorf("%s: test does not know this type", name)
			}
		}
	}
	if n == 0 {
		t.Error("no relocations checked")
	}
	return ext
}

func TestLinkVariants(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			o, r, bases := setup(t, v)
			p, err := Prepare(o, r)
			if err != nil {
				t.Fatal(err)
			}
			checkLayout(t, p, bases[0])
			var exts [2]map[string]int32
			for i, base := range bases {
				img, err := p.Link(base)
				if err != nil {
					t.Fatalf("Link(%#x): %v", base, err)
				}
				exts[i] = checkRelocs(t, p, img, r, compile(t, "patch.c", v.flags...))
				if img.Symbols["patched"] < base || img.Symbols["patched"] >= base+p.Size() {
					t.Errorf("patched at %#x, outside [%#x,+%#x)", img.Symbols["patched"], base, p.Size())
				}
			}
			// PC-relative fields against target symbols move by the base
			// difference; fields against the patch's own sections do not
			// (checkRelocs verified both against their absolute targets).
			delta := int64(bases[1] - bases[0])
			for name, f0 := range exts[0] {
				if got := int64(exts[1][name]) - int64(f0); got != -delta {
					t.Errorf("PC32 field against %s moved by %#x between bases, want %#x", name, got, -delta)
				}
			}
			switch v.name {
			case "pie":
				if len(exts[0]) == 0 {
					t.Error("no PC32 against counter in the PIE variant")
				}
				// The reference to counter is preferred, not required: from
				// a base out of its reach, Link rewrites the instruction to
				// go through the GOT (arch.FarRef).
				if reach, prefer := p.Reach(), p.Prefer(); len(reach) != 0 || len(prefer) != 1 || prefer[0] != 0x555555558010-4 {
					t.Errorf("Reach = %#x, Prefer = %#x, want none and [counter-4]", reach, prefer)
				}
				if _, err := p.Link(0x7e0000000000); err != nil {
					t.Errorf("Link out of counter's reach: %v", err)
				}
			case "pic":
				if reach := p.Reach(); len(reach) != 0 {
					t.Errorf("Reach = %#x, want none: -fPIC reaches data through the GOT", reach)
				}
			case "pie-bound":
				img, _ := p.Link(bases[0])
				if got := img.Symbols["counter"]; got != 0x555555558010 {
					t.Errorf("bound counter at %#x, want the target's 0x555555558010", got)
				}
			}
			lim, low := p.NeedsLow()
			if v.name == "nopic" {
				if !low || lim != 1<<31 {
					t.Errorf("NeedsLow = %#x, %v; want 2 GiB (R_X86_64_32S)", lim, low)
				}
				if _, err := p.Link(1 << 32); !errors.Is(err, arch.ErrRelocOverflow) {
					t.Errorf("Link above 4 GiB: %v, want ErrRelocOverflow", err)
				}
			} else if low {
				t.Errorf("NeedsLow = %#x, want none", lim)
			}
		})
	}
}

func checkLayout(t *testing.T, p *Prepared, base uint64) {
	t.Helper()
	img, err := p.Link(base)
	if err != nil {
		t.Fatal(err)
	}
	if p.Size()%PageSize != 0 || p.Size() == 0 {
		t.Errorf("Size = %#x", p.Size())
	}
	prev := uint64(0)
	wantProt := map[string]int{"text": ProtRead | ProtExec, "rodata": ProtRead, "data": ProtRead | ProtWrite}
	order := ""
	for i, sg := range img.Segments {
		order += sg.Name + " "
		if sg.Offset%PageSize != 0 || (i > 0 && sg.Offset < prev) || sg.Offset+uint64(len(sg.Data)) > p.Size() {
			t.Errorf("segment %s at %#x+%#x misplaced (prev end %#x, size %#x)", sg.Name, sg.Offset, len(sg.Data), prev, p.Size())
		}
		if sg.Prot != wantProt[sg.Name] {
			t.Errorf("segment %s prot %d", sg.Name, sg.Prot)
		}
		prev = sg.Offset + uint64(len(sg.Data))
	}
	if !strings.HasPrefix(order, "text rodata") {
		t.Errorf("segments %q, want text rodata [data]", order)
	}
}

func TestFarCallStub(t *testing.T) {
	const base = 0x7e0000000000
	o := parse(t, "patch.c", "-DUSE_TLS")
	r := libcResolver(0, 0x555555558010)
	r.addrs["snprintf"] = base + 3<<30   // 3 GiB away: needs the stub
	r.addrs["strlen"] = base + 0x1000000 // near: direct call
	r.addrs["counter"] = base + 0x2000000
	p, err := Prepare(o, r)
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Link(base)
	if err != nil {
		t.Fatal(err)
	}
	checkRelocs(t, p, img, r, compile(t, "patch.c", "-DUSE_TLS"))
	text := img.Segments[0]
	// Find the calls in patched() and where they land.
	start := img.Symbols["patched"] - base
	var direct, viaStub int
	for _, pr := range p.relocs {
		if pr.info.Name != "R_X86_64_PLT32" {
			continue
		}
		P := p.secLoc[pr.sec].v + pr.r.off
		if P < start {
			continue
		}
		dest := P + 4 + uint64(int64(int32(binary.LittleEndian.Uint32(text.Data[P:]))))
		switch name := o.symName(pr.r.sym); name {
		case "snprintf":
			stub := text.Data[dest : dest+14]
			if want := o.Arch().FarStub(base + 3<<30); !bytes.Equal(stub, want) {
				t.Errorf("call to snprintf lands on % x, want stub % x", stub, want)
			}
			viaStub++
		case "strlen":
			if dest != 0x1000000 {
				t.Errorf("strlen call lands at region offset %#x, want direct", dest)
			}
			direct++
		}
	}
	if direct != 1 || viaStub != 1 {
		t.Errorf("saw %d direct and %d stub calls, want 1 and 1", direct, viaStub)
	}
}

func TestUnresolved(t *testing.T) {
	o := parse(t, "patch.c", "-DUSE_TLS")
	_, err := Prepare(o, &fakeResolver{})
	if !errors.Is(err, ErrUnresolved) {
		t.Fatalf("got %v, want ErrUnresolved", err)
	}
	for _, s := range []string{"counter (referenced from .text.patched)", "snprintf", "strlen", "tlsvar"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestWeakUndefined(t *testing.T) {
	src := `extern int maybe(void) __attribute__((weak));
int f(void) { return maybe ? maybe() : 42; }`
	for _, flags := range [][]string{nil, {"-fPIC"}} {
		o := parse(t, src, flags...)
		p, err := Prepare(o, &fakeResolver{})
		if err != nil {
			t.Fatalf("%v: %v", flags, err)
		}
		if _, err := p.Link(0x7e0000000000); err != nil {
			t.Fatalf("%v: %v", flags, err)
		}
	}
}

// TestGeneralDynamicTLS: -fPIC code reaches a library's thread-local
// variable through __tls_get_addr with a tls_index pair in the patch's GOT
// holding the module id and offset the resolver found; without a module id
// the link is refused, naming the variable.
func TestGeneralDynamicTLS(t *testing.T) {
	o := parse(t, "patch.c", "-fPIC", "-DUSE_TLS")
	r := libcResolver(0x7f1234560000, 0x555555558010)
	r.addrs["__tls_get_addr"] = 0x7f1234400000
	if _, err := Prepare(o, r); !errors.Is(err, ErrUnresolved) || !strings.Contains(err.Error(), "tlsvar") {
		t.Fatalf("without a module id: %v, want ErrUnresolved naming tlsvar", err)
	}
	r.mods = map[string]uint64{"tlsvar": 3}
	p, err := Prepare(o, r)
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Link(0x7e0000000000)
	if err != nil {
		t.Fatal(err)
	}
	var got []gotSlot
	for _, s := range p.got {
		if s.kind == slotModule || s.kind == slotDTPOff {
			got = append(got, s)
		}
	}
	if len(got) != 2 || got[0].kind != slotModule || got[1].kind != slotDTPOff {
		t.Fatalf("GOT %+v, want a (module, offset) pair", p.got)
	}
	var seg []byte
	for _, sg := range img.Segments {
		if sg.Offset <= p.gotOff && p.gotOff < sg.Offset+uint64(len(sg.Data)) {
			seg = sg.Data[p.gotOff-sg.Offset:]
		}
	}
	for i, s := range p.got {
		v := binary.LittleEndian.Uint64(seg[8*i:])
		switch s.kind {
		case slotModule:
			if v != 3 {
				t.Errorf("ti_module = %d, want 3", v)
			}
		case slotDTPOff:
			if int64(v) != -0x44+0x1000 {
				t.Errorf("ti_offset = %#x, want %#x", v, -0x44+0x1000)
			}
		}
	}
}

func TestUnsupportedReloc(t *testing.T) {
	tests := []struct {
		name  string
		flags []string
		want  []string
	}{
		{"large model", []string{"-fPIC", "-mcmodel=large"}, []string{"R_X86_64_PLTOFF64", "snprintf", ".text.patched"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := parse(t, "patch.c", tt.flags...)
			r := libcResolver(0x7f1234560000, 0x555555558010)
			_, err := Prepare(o, r)
			if !errors.Is(err, arch.ErrUnsupportedReloc) {
				t.Fatalf("got %v, want ErrUnsupportedReloc", err)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		flags []string
		bind  map[string]uint64
		want  string
	}{
		{"defines TLS", "__thread int x; int f(void) { return x; }", nil, nil, "thread-local"},
		{"constructor", "int x; __attribute__((constructor)) static void init(void) { x = 1; }", nil, nil, "constructors"},
		{"shared data section", "int a = 1, b = 2; int f(void) { return a + b; }", []string{"-fno-data-sections"}, map[string]uint64{"a": 0x1000}, "-fdata-sections"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseObject(compile(t, tt.src, tt.flags...))
			if err == nil {
				_, err = Prepare(o, &fakeResolver{bind: tt.bind})
			}
			if !errors.Is(err, ErrBadObject) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want ErrBadObject mentioning %q", err, tt.want)
			}
		})
	}
	for _, in := range [][]byte{nil, []byte("\x7fELF"), bytes.Repeat([]byte{0}, 64)} {
		if _, err := ParseObject(in); !errors.Is(err, ErrBadObject) {
			t.Errorf("ParseObject(% x): %v, want ErrBadObject", in, err)
		}
	}
}

func TestCommonAndBinding(t *testing.T) {
	src := `int shared; static int mine; int f(void) { mine++; return shared++ + mine; }`
	o := parse(t, src, "-fcommon")
	if d := o.Data(); len(d) != 2 || d[1].Section != "COMMON" || d[1].Name != "shared" {
		t.Fatalf("Data = %+v", d)
	}
	const base = 0x7e0000000000
	// Not in the target: allocated in the patch's data segment.
	p, err := Prepare(o, &fakeResolver{})
	if err != nil {
		t.Fatal(err)
	}
	img, err := p.Link(base)
	if err != nil {
		t.Fatal(err)
	}
	data := img.Segments[len(img.Segments)-1]
	if data.Name != "data" {
		t.Fatalf("last segment %s", data.Name)
	}
	for _, name := range []string{"shared", "mine"} {
		if a := img.Symbols[name]; a < base+data.Offset || a >= base+data.Offset+uint64(len(data.Data)) {
			t.Errorf("%s at %#x, not in the data segment", name, a)
		}
	}
	// In the target: both bound, no data segment at all.
	r := &fakeResolver{bind: map[string]uint64{"shared": 0x555555558010, "mine": 0x555555558020}}
	p, err = Prepare(o, r)
	if err != nil {
		t.Fatal(err)
	}
	img, err = p.Link(0x555555600000)
	if err != nil {
		t.Fatal(err)
	}
	for _, sg := range img.Segments {
		if sg.Name == "data" {
			t.Errorf("data segment present although every object is bound")
		}
	}
	if img.Symbols["shared"] != 0x555555558010 || img.Symbols["mine"] != 0x555555558020 {
		t.Errorf("Symbols = %#x", img.Symbols)
	}
	for _, ref := range r.asked {
		if ref.Name == "mine" && (!ref.Local || !ref.Defined || ref.File != "inline.c") {
			t.Errorf("asked %+v", ref)
		}
	}
	checkRelocs(t, p, img, r, compile(t, src, "-fcommon"))
}

// TestRunLinked is the end-to-end check: the image is loaded into a real
// process (a C host that maps a region, reports its libc's and its own
// symbols' addresses, receives the linked segments and calls the entry) and
// must behave like the C source says.
func TestRunLinked(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "host")
	if msg, err := exec.Command("gcc", "-O2", "-no-pie", "-o", host, "testdata/host.c").CombinedOutput(); err != nil {
		t.Fatalf("gcc host: %v\n%s", err, msg)
	}
	hints := map[string]string{"pie": "0x10000000", "nopic": "0x10000000", "pic": "0x7e0000000000", "pie-bound": "0x20000000"}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			o := parse(t, "patch.c", v.flags...)
			cmd := exec.Command(host, hints[v.name])
			stdin, _ := cmd.StdinPipe()
			var stdout, stderr bytes.Buffer
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout = pw
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pw.Close()
			defer cmd.Process.Kill()
			var base, snprintfAddr, strlenAddr, counterAddr uint64
			var tpoff int64
			line := make([]byte, 0, 128)
			for b := make([]byte, 1); ; {
				if _, err := pr.Read(b); err != nil {
					t.Fatalf("host: %v; stderr %s", err, stderr.String())
				}
				if b[0] == '\n' {
					break
				}
				line = append(line, b[0])
			}
			if _, err := fmt.Sscanf(string(line), "%x %x %x %x %d", &base, &snprintfAddr, &strlenAddr, &counterAddr, &tpoff); err != nil {
				t.Fatalf("host said %q: %v", line, err)
			}
			r := &fakeResolver{
				addrs: map[string]uint64{"snprintf": snprintfAddr, "strlen": strlenAddr, "counter": counterAddr},
				tls:   map[string]int64{"tlsvar": tpoff},
				bind:  map[string]uint64{"counter": counterAddr},
			}
			p, err := Prepare(o, r)
			if err != nil {
				t.Fatal(err)
			}
			if p.Size() > 16<<20 {
				t.Fatalf("Size %#x too big for the host's region", p.Size())
			}
			for _, a := range p.Reach() {
				if d := int64(a - base); d < -(1<<31)+int64(p.Size()) || d > 1<<31-int64(p.Size()) {
					t.Fatalf("host region %#x cannot reach %#x", base, a)
				}
			}
			img, err := p.Link(base)
			if err != nil {
				t.Fatal(err)
			}
			var msg bytes.Buffer
			put := func(v uint64) { binary.Write(&msg, binary.LittleEndian, v) }
			put(img.Symbols["patched"])
			put(uint64(len(img.Segments)))
			for _, sg := range img.Segments {
				put(sg.Offset)
				put(uint64(sg.Prot))
				put(uint64(len(sg.Data)))
				msg.Write(sg.Data)
			}
			if _, err := stdin.Write(msg.Bytes()); err != nil {
				t.Fatal(err)
			}
			stdin.Close()
			rest := make([]byte, 4096)
			for {
				n, err := pr.Read(rest)
				stdout.Write(rest[:n])
				if err != nil {
					break
				}
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("host: %v\nstdout %s\nstderr %s", err, stdout.String(), stderr.String())
			}
			// counter starts at 5 in the host; calls is the patch's own,
			// starting at 0; tlsvar starts at 7.
			want := "22 [patched one 26 3 tls=8] counter=26 tlsvar=8\n" +
				"23 [patched two 48 22 tls=9] counter=48 tlsvar=9\n"
			if got := stdout.String(); got != want {
				t.Errorf("host printed\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// FuzzParseObject feeds mutated objects to ParseObject and, when they parse,
// to Prepare and Link with a resolver that finds everything.
func FuzzParseObject(f *testing.F) {
	for _, v := range variants {
		f.Add(compile(f, "patch.c", v.flags...))
	}
	small := compile(f, "int x = 3; int f(void) { return x; }")
	f.Add(small)
	f.Add(small[:64])
	f.Add(small[:len(small)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseObject(data)
		if err != nil {
			if !errors.Is(err, ErrBadObject) {
				t.Fatalf("error %v does not wrap ErrBadObject", err)
			}
			return
		}
		o.Functions()
		o.Data()
		o.Undefined()
		p, err := Prepare(o, anyResolver{})
		if err != nil || p.Size() > 1<<20 {
			return
		}
		p.Reach()
		p.NeedsLow()
		p.Link(0x7e0000000000)
	})
}

type anyResolver struct{}

func (anyResolver) Resolve(ref SymbolRef) (Resolution, error) {
	return Resolution{Found: !ref.Defined, Addr: 0x7f0000001000, TPOff: -8}, nil
}

func TestNeedsLow(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		limit uint64
		typ   string
	}{
		{"32S", "long t[4]; long g(int i) { return t[i]; }", 1 << 31, "R_X86_64_32S"},
		{"32", "static char s[8]; char *g(void) { return s; }", 1 << 32, "R_X86_64_32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Prepare(parse(t, tt.src, "-fno-pic", "-mcmodel=small"), &fakeResolver{})
			if err != nil {
				t.Fatal(err)
			}
			limit, ok := p.NeedsLow()
			if !ok || limit != tt.limit {
				t.Fatalf("NeedsLow = %#x, %v; want %#x", limit, ok, tt.limit)
			}
			if _, err := p.Link(tt.limit - p.Size()); err != nil {
				t.Errorf("Link just below the limit: %v", err)
			}
			_, err = p.Link(tt.limit)
			if !errors.Is(err, arch.ErrRelocOverflow) || !strings.Contains(err.Error(), tt.typ+":") {
				t.Errorf("Link at the limit: %v, want %s overflow", err, tt.typ)
			}
		})
	}
}

// TestBadSectionAlign: an object whose loaded sections ask for an alignment
// that is huge or not a power of two is refused by ParseObject — which build
// and apply both call — instead of wrapping the layout arithmetic (issue 11
// item 13: .eh_frame aligned to 0xfffffffffffffffa panicked Prepare with
// "makeslice: len out of range" in the apply worker).
func TestBadSectionAlign(t *testing.T) {
	good := compile(t, "int x = 3; int f(int y) { return x + y; }", "-fasynchronous-unwind-tables")
	for _, c := range []struct {
		sec   string
		align uint64
	}{{".eh_frame", 0xfffffffffffffffa}, {".eh_frame", 1 << 40}, {".eh_frame", 24}, {".text", 0xfffffffffffffffa}, {".data", 3}} {
		data := withAlign(t, good, c.sec, c.align)
		o, err := ParseObject(data)
		if err == nil {
			_, err = Prepare(o, anyResolver{})
			t.Errorf("%s aligned to %#x: accepted (Prepare: %v)", c.sec, c.align, err)
			continue
		}
		if !errors.Is(err, ErrBadObject) || !strings.Contains(err.Error(), c.sec) {
			t.Errorf("%s aligned to %#x: %v", c.sec, c.align, err)
		}
	}
}

// withAlign returns a copy of obj with the sh_addralign of section name set
// to align (Elf64_Shdr.sh_addralign is at offset 0x30, gABI).
func withAlign(t *testing.T, obj []byte, name string, align uint64) []byte {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	shoff := binary.LittleEndian.Uint64(obj[0x28:])
	shentsize := uint64(binary.LittleEndian.Uint16(obj[0x3a:]))
	out := append([]byte(nil), obj...)
	for i, s := range f.Sections {
		if s.Name == name {
			binary.LittleEndian.PutUint64(out[shoff+uint64(i)*shentsize+0x30:], align)
			return out
		}
	}
	t.Fatalf("no section %s", name)
	return nil
}
