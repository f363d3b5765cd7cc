package main

import "testing"

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain text\n\tindented": "plain text\n\tindented",
		"\x1b[2J\x07":            `\x1b[2J\x07`,
		"csi \u009b31m":          `csi \x9b31m`,
		"bidi \u202eevil":        `bidi \u202eevil`,
		"bad \xff utf-8":         `bad \xff utf-8`,
		"del \x7f, cr \r":        `del \x7f, cr \x0d`,
		"line sep \u2028":        `line sep \u2028`,
		"unicode é 日本 ok":        "unicode é 日本 ok",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}
