package patchfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
)

// maxJSONDepth bounds the nesting exactKeys follows (the manifest needs 4).
const maxJSONDepth = 32

// exactKeys checks the JSON value in b against the Go type t before
// encoding/json decodes it: every object key must be the exact name of a
// field of the matching struct (encoding/json also accepts any other case,
// so `"ID"` would set the id — and a later `"ID"` override an earlier
// `"id"`), and no object may repeat a key (encoding/json keeps the last).
// What a signature covers must mean one thing to every reader.
func exactKeys(b []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return walkKeys(dec, t, 0, "")
}

func walkKeys(dec *json.Decoder, t reflect.Type, depth int, path string) error {
	if depth > maxJSONDepth {
		return fmt.Errorf("%s: nested too deeply", where(path))
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err == io.EOF {
		return fmt.Errorf("%s: unexpected end of JSON", where(path))
	}
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar: its type is encoding/json's to check
	}
	switch d {
	case '[':
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := walkKeys(dec, elem, depth+1, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case '{':
		var fields map[string]reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		}
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			k, _ := kt.(string)
			if seen[k] {
				return fmt.Errorf("%s: duplicate key %q", where(path), k)
			}
			seen[k] = true
			var vt reflect.Type
			switch {
			case fields != nil:
				ft, ok := fields[k]
				if !ok {
					return fmt.Errorf("%s: unknown key %q (keys are case-sensitive)", where(path), k)
				}
				vt = ft
			case t != nil && t.Kind() == reflect.Map:
				vt = t.Elem()
			}
			if err := walkKeys(dec, vt, depth+1, path+"."+k); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// jsonFields maps the JSON names of t's fields to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range jsonFields(ft) {
					out[k] = v
				}
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func where(path string) string {
	if path == "" {
		return "top level"
	}
	return strings.TrimPrefix(path, ".")
}
