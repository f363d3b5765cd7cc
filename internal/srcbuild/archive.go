package srcbuild

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// member is one file of an ar archive.
type member struct {
	Name string
	Data []byte
}

// readArchive returns the members of a System V / GNU ar archive (static
// library), the symbol table and the long-name table excluded. The archive
// comes from the build being examined, but is parsed defensively all the
// same: sizes are checked against the file.
func readArchive(b []byte) (_ []member, err error) {
	const magic = "!<arch>\n"
	if !bytes.HasPrefix(b, []byte(magic)) {
		return nil, fmt.Errorf("not an ar archive")
	}
	var out []member
	var longNames []byte
	for off := len(magic); off+60 <= len(b); {
		h := b[off : off+60]
		name := strings.TrimRight(string(h[:16]), " ")
		size, err := strconv.ParseUint(strings.TrimSpace(string(h[48:58])), 10, 63)
		if err != nil || string(h[58:60]) != "`\n" {
			return nil, fmt.Errorf("archive member header at %d is malformed", off)
		}
		off += 60
		if size > uint64(len(b)-off) {
			return nil, fmt.Errorf("archive member %q at %d runs past the end", name, off)
		}
		data := b[off : off+int(size)]
		off += int(size) + int(size&1)
		switch {
		case name == "/" || name == "/SYM64/":
			continue
		case name == "//":
			longNames = data
			continue
		case strings.HasPrefix(name, "/"):
			i, err := strconv.Atoi(name[1:])
			if err != nil || i < 0 || i >= len(longNames) {
				return nil, fmt.Errorf("archive member long name %q is malformed", name)
			}
			n := longNames[i:]
			if j := bytes.IndexByte(n, '\n'); j >= 0 {
				n = n[:j]
			}
			name = string(n)
		case strings.HasPrefix(name, "#1/"):
			return nil, fmt.Errorf("BSD archive names are not supported")
		}
		out = append(out, member{Name: strings.TrimSuffix(name, "/"), Data: data})
	}
	return out, nil
}
