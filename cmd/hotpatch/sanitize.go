package main

// Text output carries strings read from target processes (patch records,
// memfd names, /proc/PID/comm), which their owners control. A terminal would
// act on control sequences in them (clear the screen, set the title, move
// the cursor, hide text with bidirectional overrides), so the text output is
// filtered: every character that does not print as itself is written as an
// escape (\x1b, \u202e). JSON output is left to encoding/json, which escapes
// control characters and makes every string valid UTF-8.

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/hotpatch/hotpatch/internal/record"
)

// cleanWriter writes text with the characters a terminal would interpret
// escaped, except newlines and tabs; with --json it passes the document
// through unchanged.
type cleanWriter struct{ w io.Writer }

func (c cleanWriter) Write(b []byte) (int, error) {
	if jsonOut {
		return c.w.Write(b)
	}
	if _, err := io.WriteString(c.w, clean(string(b))); err != nil {
		return 0, err
	}
	return len(b), nil
}

// raw returns the writer behind w if w is a cleanWriter (for the progress
// bar, which writes its own control sequences).
func raw(w io.Writer) io.Writer {
	if c, ok := w.(cleanWriter); ok {
		return c.w
	}
	return w
}

// clean escapes in s every character that is not printable text, keeping
// newlines and tabs.
func clean(s string) string {
	if record.Printable(strings.NewReplacer("\n", "", "\t", "").Replace(s)) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' || r == '\t' || record.PrintableRune(r):
			b.WriteString(s[i : i+n])
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += n
	}
	return b.String()
}
