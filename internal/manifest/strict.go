package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// shape is what strict decoding expects of a JSON value: an object with
// exactly named fields, a map with free keys, an array of one shape, or
// (nil) a scalar whose type encoding/json checks afterwards.
type shape struct {
	fields map[string]*shape // object with these exact keys
	values *shape            // map: any key, values of this shape
	elem   *shape            // array of this shape
	isMap  bool
}

var (
	fileShape   = &shape{fields: map[string]*shape{"path": nil, "size": nil, "sha256": nil, "media_type": nil}}
	labelsShape = &shape{isMap: true}
	headerShape = &shape{fields: map[string]*shape{"name": nil, "version": nil, "producer": nil, "retention_class": nil, "labels": labelsShape}}
	fullShape   = &shape{fields: map[string]*shape{"name": nil, "version": nil, "producer": nil, "retention_class": nil, "labels": labelsShape,
		"files": {elem: fileShape}}}
)

// Decode reads one JSON manifest of at most maxBytes bytes. It is strict:
// invalid UTF-8 (or an escaped lone surrogate) in any string, a key that
// appears twice in one object, a key that matches a field only when case
// is ignored, unknown fields and trailing data are errors naming the
// field. encoding/json alone would replace bad bytes with U+FFFD, let the
// last duplicate win and match keys case-insensitively, so the stored
// manifest could differ from what the producer sent. It does not validate
// the content; call Validate.
func Decode(r io.Reader, maxBytes int64) (*Manifest, error) {
	var m Manifest
	if err := decodeStrict(r, maxBytes, fullShape, &m); err != nil {
		return nil, err
	}
	return &m, nil
}

// DecodeHeader reads a manifest without files (name, version, producer,
// retention class and labels), as the one-request form publish sends it,
// with the same strict rules as Decode. A "files" key is an unknown field.
func DecodeHeader(r io.Reader, maxBytes int64) (*Manifest, error) {
	var m Manifest
	if err := decodeStrict(r, maxBytes, headerShape, &m); err != nil {
		return nil, err
	}
	m.Files = nil
	return &m, nil
}

func decodeStrict(r io.Reader, maxBytes int64, sh *shape, v any) error {
	raw, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return fmt.Errorf("reading the manifest: %w", err)
	}
	if int64(len(raw)) > maxBytes {
		return errf(CodeInvalidJSON, "", "manifest is larger than %d bytes", maxBytes)
	}
	if err := checkStrict(raw, sh); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errf(CodeInvalidJSON, te.Field, "must be a JSON %s, not %s", te.Type.Kind(), te.Value)
		}
		return errf(CodeInvalidJSON, "", "malformed manifest JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errf(CodeInvalidJSON, "", "unexpected data after the manifest JSON object")
	}
	return nil
}

// frame is one open object or array during checkStrict.
type frame struct {
	sh      *shape
	object  bool
	field   string            // field path of this container
	key     string            // object: key whose value comes next ("" = expecting a key)
	haveKey bool              // object: a key was read, its value comes next
	seen    map[string]string // object: lower-cased key -> key as sent
	index   int               // array: index of the next element
}

// checkStrict walks raw's tokens and reports the first string that is not
// valid UTF-8, duplicate or case-differing key, or unknown field, naming
// its field path (files[2].path, labels.env).
func checkStrict(raw []byte, root *shape) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var stack []*frame
	prev := int64(0)
	rootSeen := false
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return errf(CodeInvalidJSON, "", "malformed manifest JSON: %v", err)
		}
		end := dec.InputOffset()
		seg := raw[prev:end]
		prev = end
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) > 0 {
				stack[len(stack)-1].valueDone()
			}
			continue
		}
		// A key of the object on top.
		if top != nil && top.object && !top.haveKey {
			k, _ := tok.(string)
			field := joinField(top.field, k)
			if err := checkString(seg, k, field); err != nil {
				return err
			}
			low := strings.ToLower(k)
			if prevKey, dup := top.seen[low]; dup {
				if prevKey == k {
					return errf(CodeInvalidJSON, field, "key %q appears more than once", k)
				}
				return errf(CodeInvalidJSON, field, "keys %q and %q differ only in case", prevKey, k)
			}
			top.seen[low] = k
			if top.sh != nil && !top.sh.isMap {
				if _, known := top.sh.fields[k]; !known {
					for name := range top.sh.fields {
						if strings.EqualFold(name, k) {
							return errf(CodeInvalidJSON, field, "unknown field %q (field names are lower-case: %q)", k, name)
						}
					}
					return errf(CodeInvalidJSON, field, "unknown field %q", k)
				}
			}
			top.key, top.haveKey = k, true
			continue
		}
		// A value: of the root, of an object's key or an array element.
		var sh *shape
		field := ""
		switch {
		case top == nil:
			if rootSeen {
				return errf(CodeInvalidJSON, "", "unexpected data after the manifest JSON object")
			}
			rootSeen, sh = true, root
		case top.object:
			field = joinField(top.field, top.key)
			if top.sh != nil {
				if top.sh.isMap {
					sh = top.sh.values
				} else {
					sh = top.sh.fields[top.key]
				}
			}
		default:
			field = fmt.Sprintf("%s[%d]", top.field, top.index)
			if top.sh != nil {
				sh = top.sh.elem
			}
		}
		switch t := tok.(type) {
		case json.Delim:
			f := &frame{sh: sh, object: t == '{', field: field}
			if f.object {
				f.seen = map[string]string{}
			}
			stack = append(stack, f)
			continue
		case string:
			if err := checkString(seg, t, field); err != nil {
				return err
			}
		}
		if top != nil {
			top.valueDone()
		}
	}
}

func (f *frame) valueDone() {
	if f.object {
		f.key, f.haveKey = "", false
	} else {
		f.index++
	}
}

func joinField(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// checkString checks the raw bytes of one string token (seg ends with the
// quoted string; anything before its opening quote is whitespace and
// delimiters): they must be valid UTF-8, and the decoded string may hold
// U+FFFD only where the sender wrote one (an escaped lone surrogate
// decodes to U+FFFD too).
func checkString(seg []byte, decoded, field string) error {
	i := bytes.IndexByte(seg, '"')
	if i < 0 {
		return errf(CodeInvalidJSON, field, "malformed string")
	}
	quoted := seg[i:]
	if !utf8.Valid(quoted) {
		return errf(CodeInvalidJSON, field, "is not valid UTF-8")
	}
	if n := strings.Count(decoded, "\uFFFD"); n > 0 {
		sent := bytes.Count(quoted, []byte("\uFFFD")) + countFold(quoted, `\ufffd`)
		if n > sent {
			return errf(CodeInvalidJSON, field, "contains an invalid \\u escape (a lone surrogate)")
		}
	}
	return nil
}

func countFold(b []byte, sub string) int {
	return strings.Count(strings.ToLower(string(b)), sub)
}
