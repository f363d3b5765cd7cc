package srcbuild

import (
	"bytes"
	"os/exec"
	"strings"
)

// demangle returns the readable names of the mangled ones among names (C++
// Itanium "_Z…", Rust legacy "_ZN…h<hash>E" and v0 "_R…"), through the host's
// c++filt (binutils, present wherever gcc is; it knows both languages). A
// name it cannot demangle, or a host without c++filt, gives no entry: the
// mangled name is still exact.
func demangle(names []string) map[string]string {
	var mangled []string
	for _, n := range names {
		if strings.HasPrefix(n, "_Z") || strings.HasPrefix(n, "_R") {
			mangled = append(mangled, n)
		}
	}
	if len(mangled) == 0 {
		return nil
	}
	path, err := exec.LookPath("c++filt")
	if err != nil {
		return nil
	}
	cmd := exec.Command(path)
	cmd.Stdin = strings.NewReader(strings.Join(mangled, "\n") + "\n")
	out, err := cmd.Output()
	if err != nil {
		return nil
	}
	lines := strings.Split(string(bytes.TrimRight(out, "\n")), "\n")
	if len(lines) != len(mangled) {
		return nil
	}
	m := map[string]string{}
	for i, n := range mangled {
		if lines[i] != n && lines[i] != "" {
			m[n] = lines[i]
		}
	}
	return m
}
