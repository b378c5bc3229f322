package manifest

import (
	"errors"
	"strings"
	"testing"
)

const goodFile = `{"path":"a.txt","size":1,"sha256":"` + "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb" + `"}`

var rawBytes = strings.NewReplacer(`\xff`, "\xff", `\xc3`, "\xc3")

func manifestJSON(fields string) string {
	return `{"name":"app","version":"1","producer":"ci","retention_class":"release"` + fields + `}`
}

// TestDecodeStrict: what encoding/json would silently change (bad UTF-8
// to U+FFFD, the last of duplicate keys, case-insensitive keys) is an
// error naming the field.
func TestDecodeStrict(t *testing.T) {
	cases := []struct {
		name, raw, field, msg string
	}{
		{"invalid UTF-8 in a path", manifestJSON(`,"files":[{"path":"a\xff.txt","size":1,"sha256":"x"}]`), "files[0].path", "UTF-8"},
		{"invalid UTF-8 in a label value", manifestJSON(`,"labels":{"k":"v\xc3"},"files":[` + goodFile + `]`), "labels.k", "UTF-8"},
		{"invalid UTF-8 in a key", manifestJSON(`,"labels":{"k\xff":"v"},"files":[` + goodFile + `]`), "labels.k\uFFFD", "UTF-8"},
		{"lone surrogate escape", manifestJSON(`,"labels":{"k":"\ud800"},"files":[` + goodFile + `]`), "labels.k", "surrogate"},
		{"duplicate path key", manifestJSON(`,"files":[{"path":"../evil","path":"ok","size":1,"sha256":"x"}]`), "files[0].path", "more than once"},
		{"duplicate top-level key", `{"name":"a","name":"b"}`, "name", "more than once"},
		{"duplicate label", manifestJSON(`,"labels":{"k":"1","k":"2"},"files":[` + goodFile + `]`), "labels.k", "more than once"},
		{"key in upper case", `{"NAME":"app","version":"1","producer":"ci","retention_class":"release","files":[` + goodFile + `]}`, "NAME", "lower-case"},
		{"keys differing in case", manifestJSON(`,"labels":{"k":"1","K":"2"},"files":[` + goodFile + `]`), "labels.K", "differ only in case"},
		{"file key in mixed case", manifestJSON(`,"files":[{"Path":"a","size":1,"sha256":"x"}]`), "files[0].Path", "lower-case"},
		{"unknown field", manifestJSON(`,"extra":1,"files":[]`), "extra", "unknown field"},
		{"trailing data", manifestJSON(`,"files":[]`) + `{}`, "", "after the manifest"},
		{"wrong type", manifestJSON(`,"files":[{"path":"a","size":"1","sha256":"x"}]`), "files.size", "must be a JSON int64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := rawBytes.Replace(c.raw) // raw strings cannot hold bad UTF-8
			_, err := Decode(strings.NewReader(raw), 1<<20)
			var me *Error
			if !errors.As(err, &me) || me.Code != CodeInvalidJSON {
				t.Fatalf("Decode(%q) = %v, want an invalid_json error", raw, err)
			}
			if me.Field != c.field || !strings.Contains(me.Message, c.msg) {
				t.Fatalf("error %q (field %q), want field %q and a message with %q", me.Error(), me.Field, c.field, c.msg)
			}
		})
	}
	// What must still pass: escapes, a literal U+FFFD the sender wrote,
	// whitespace, and the same key in different objects.
	ok := `{ "name" : "app", "version":"1", "producer":"ci", "retention_class":"release",
	  "labels": {"note": "caf\u00e9 \ufffd \uFFFD �", "path": "x"},
	  "files": [` + goodFile + `, {"path":"b/c","size":2,"sha256":"` + strings.Repeat("0", 64) + `"}] }`
	m, err := Decode(strings.NewReader(ok), 1<<20)
	if err != nil {
		t.Fatalf("valid manifest refused: %v", err)
	}
	if m.Labels["note"] != "café \uFFFD \uFFFD \uFFFD" || len(m.Files) != 2 || m.Files[1].Path != "b/c" {
		t.Fatalf("decoded %+v", m)
	}
}

func TestDecodeHeaderRefusesFiles(t *testing.T) {
	_, err := DecodeHeader(strings.NewReader(manifestJSON(`,"files":[]`)), 1<<20)
	var me *Error
	if !errors.As(err, &me) || me.Field != "files" {
		t.Fatalf("DecodeHeader with files: %v", err)
	}
	m, err := DecodeHeader(strings.NewReader(manifestJSON(`,"labels":{"a":"b"}`)), 1<<20)
	if err != nil || m.Name != "app" || m.Labels["a"] != "b" {
		t.Fatalf("DecodeHeader: %+v %v", m, err)
	}
	if _, err := DecodeHeader(strings.NewReader("{\"name\":\"a\xffb\"}"), 1<<20); err == nil || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("DecodeHeader with bad UTF-8: %v", err)
	}
}

// TestPathSegmentLimit: a segment longer than a file name may be on common
// file systems is refused at publish, since a pull could not write it.
func TestPathSegmentLimit(t *testing.T) {
	if err := ValidatePath(strings.Repeat("a", 255) + "/" + strings.Repeat("b", 255)); err != nil {
		t.Fatalf("255-byte segments refused: %v", err)
	}
	for _, p := range []string{strings.Repeat("a", 256), "dir/" + strings.Repeat("x", 1000), strings.Repeat("é", 128)} {
		err := ValidatePath(p)
		if err == nil || err.Code != CodeInvalidPath || !strings.Contains(err.Message, "255") {
			t.Errorf("ValidatePath(%d-byte segment) = %v", len(p), err)
		}
	}
}
