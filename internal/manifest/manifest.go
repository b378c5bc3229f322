// Package manifest defines what a producer declares when it publishes a
// package, and the rules every outside-supplied name, version, label and
// file path must follow. Every check returns an *Error carrying a stable code.
package manifest

import (
	"fmt"
	"mime"
	"path"
	"regexp"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"artifactstore/internal/digest"
)

// Limits on what a manifest may contain.
const (
	MaxNameLen       = 128
	MaxVersionLen    = 128
	MaxProducerLen   = 128
	MaxRetentionLen  = 64
	MaxLabels        = 64
	MaxLabelKeyLen   = 63
	MaxLabelValueLen = 256
	MaxPathLen       = 1024
	// MaxSegmentLen is the longest path segment: NAME_MAX of common file
	// systems, so every published path can be written by a pull.
	MaxSegmentLen   = 255
	MaxMediaTypeLen = 255
)

// Stable error codes, shared with the HTTP API.
const (
	CodeInvalidJSON      = "invalid_json"
	CodeInvalidName      = "invalid_name"
	CodeInvalidVersion   = "invalid_version"
	CodeInvalidProducer  = "invalid_producer"
	CodeInvalidRetention = "invalid_retention_class"
	CodeInvalidLabel     = "invalid_label"
	CodeInvalidPath      = "invalid_path"
	CodeDuplicatePath    = "duplicate_path"
	CodeInvalidDigest    = "invalid_digest"
	CodeInvalidSize      = "invalid_size"
	CodeInvalidMediaType = "invalid_media_type"
	CodeTooManyFiles     = "too_many_files"
	CodeNoFiles          = "no_files"
)

// Error is a validation failure with a stable code and the field it concerns.
type Error struct {
	Code    string
	Field   string
	Message string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

func errf(code, field, format string, args ...any) *Error {
	return &Error{Code: code, Field: field, Message: fmt.Sprintf(format, args...)}
}

// File is one file of a package as declared by the producer.
type File struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	MediaType string `json:"media_type,omitempty"`
}

// Digest returns the file's sha256 digest; call only after Validate.
func (f File) Digest() digest.Digest {
	return digest.Digest{Algorithm: digest.SHA256, Hex: f.SHA256}
}

// Manifest is what a producer declares for one package version.
type Manifest struct {
	Name           string            `json:"name"`
	Version        string            `json:"version"`
	Producer       string            `json:"producer"`
	RetentionClass string            `json:"retention_class"`
	Labels         map[string]string `json:"labels,omitempty"`
	Files          []File            `json:"files"`
}

// Validate checks every field, fills in default media types and sorts files
// by path, so two manifests with the same content compare equal.
func (m *Manifest) Validate(maxFiles int) error {
	if err := ValidateName(m.Name); err != nil {
		return err
	}
	if err := ValidateVersion(m.Version); err != nil {
		return err
	}
	if err := ValidateProducer(m.Producer); err != nil {
		return err
	}
	if err := ValidateRetentionClass(m.RetentionClass); err != nil {
		return err
	}
	if err := ValidateLabels(m.Labels); err != nil {
		return err
	}
	if len(m.Files) == 0 {
		return errf(CodeNoFiles, "files", "a package needs at least one file")
	}
	if maxFiles > 0 && len(m.Files) > maxFiles {
		return errf(CodeTooManyFiles, "files", "%d files exceed the limit of %d per package", len(m.Files), maxFiles)
	}
	seen := make(map[string]bool, len(m.Files))
	for i := range m.Files {
		f := &m.Files[i]
		field := fmt.Sprintf("files[%d]", i)
		if err := ValidatePath(f.Path); err != nil {
			err.Field = field + ".path"
			return err
		}
		if seen[f.Path] {
			return errf(CodeDuplicatePath, field+".path", "path %q appears more than once", f.Path)
		}
		seen[f.Path] = true
		if f.Size < 0 {
			return errf(CodeInvalidSize, field+".size", "size must not be negative")
		}
		if _, err := digest.FromParts(digest.SHA256, f.SHA256); err != nil {
			return errf(CodeInvalidDigest, field+".sha256", "%v", err)
		}
		if f.MediaType == "" {
			f.MediaType = DefaultMediaType(f.Path)
		} else if err := ValidateMediaType(f.MediaType); err != nil {
			err.Field = field + ".media_type"
			return err
		}
	}
	// A path that is also a directory of another path cannot be laid out on
	// a file system, so a pull would fail: reject it at publish.
	for p := range seen {
		for dir := path.Dir(p); dir != "."; dir = path.Dir(dir) {
			if seen[dir] {
				return errf(CodeDuplicatePath, "files", "path %q is both a file and the directory of %q", dir, p)
			}
		}
	}
	sort.Slice(m.Files, func(i, j int) bool { return m.Files[i].Path < m.Files[j].Path })
	return nil
}

// SameContent reports whether two validated manifests describe the same
// package: same producer, retention class, labels and files.
func (m *Manifest) SameContent(o *Manifest) bool {
	if m.Name != o.Name || m.Version != o.Version || m.Producer != o.Producer ||
		m.RetentionClass != o.RetentionClass || len(m.Labels) != len(o.Labels) || len(m.Files) != len(o.Files) {
		return false
	}
	for k, v := range m.Labels {
		if ov, ok := o.Labels[k]; !ok || ov != v {
			return false
		}
	}
	for i := range m.Files {
		if m.Files[i] != o.Files[i] {
			return false
		}
	}
	return true
}

var (
	nameRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	versionRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]*$`)
	retentionRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	labelKeyRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]*$`)
)

// ValidateName checks a package name: 1-128 of A-Z a-z 0-9 . _ -, starting
// with a letter or digit.
func ValidateName(s string) *Error {
	return checkRE(s, MaxNameLen, nameRE, CodeInvalidName, "name",
		"letters, digits, '.', '_' and '-', starting with a letter or digit")
}

// ValidateVersion checks a version: 1-128 of A-Z a-z 0-9 . _ + -, starting
// with a letter or digit.
func ValidateVersion(s string) *Error {
	return checkRE(s, MaxVersionLen, versionRE, CodeInvalidVersion, "version",
		"letters, digits, '.', '_', '+' and '-', starting with a letter or digit")
}

// ValidateProducer checks a producer id; same rules as a package name.
func ValidateProducer(s string) *Error {
	return checkRE(s, MaxProducerLen, nameRE, CodeInvalidProducer, "producer",
		"letters, digits, '.', '_' and '-', starting with a letter or digit")
}

// ValidateRetentionClass checks a retention class: 1-64 of a-z 0-9 _ -.
func ValidateRetentionClass(s string) *Error {
	return checkRE(s, MaxRetentionLen, retentionRE, CodeInvalidRetention, "retention_class",
		"lower-case letters, digits, '_' and '-', starting with a letter or digit")
}

func checkRE(s string, max int, re *regexp.Regexp, code, field, rule string) *Error {
	if s == "" {
		return errf(code, field, "must not be empty")
	}
	if len(s) > max {
		return errf(code, field, "longer than %d characters", max)
	}
	if !re.MatchString(s) {
		return errf(code, field, "%q has characters outside %s", clip(s), rule)
	}
	return nil
}

// ValidateLabels checks label keys (1-63 of a-z 0-9 . _ / -) and values
// (at most 256 bytes of printable UTF-8).
func ValidateLabels(labels map[string]string) *Error {
	if len(labels) > MaxLabels {
		return errf(CodeInvalidLabel, "labels", "%d labels exceed the limit of %d", len(labels), MaxLabels)
	}
	for k, v := range labels {
		if err := ValidateLabel(k, v); err != nil {
			return err
		}
	}
	return nil
}

// ValidateLabel checks one key and value.
func ValidateLabel(k, v string) *Error {
	if err := checkRE(k, MaxLabelKeyLen, labelKeyRE, CodeInvalidLabel, "labels",
		"lower-case letters, digits, '.', '_', '/' and '-', starting with a letter or digit"); err != nil {
		err.Message = "key " + err.Message
		return err
	}
	if len(v) > MaxLabelValueLen {
		return errf(CodeInvalidLabel, "labels."+k, "value longer than %d bytes", MaxLabelValueLen)
	}
	if !utf8.ValidString(v) {
		return errf(CodeInvalidLabel, "labels."+k, "value is not valid UTF-8")
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return errf(CodeInvalidLabel, "labels."+k, "value contains a control or non-printable character")
		}
	}
	return nil
}

// ValidatePath checks a file path inside a package: relative, '/'-separated,
// no empty, '.' or '..' segments, no backslash, NUL or control characters,
// valid UTF-8, at most 1024 bytes and at most 255 bytes per segment.
func ValidatePath(p string) *Error {
	bad := func(why string) *Error { return errf(CodeInvalidPath, "path", "%q %s", clip(p), why) }
	switch {
	case p == "":
		return errf(CodeInvalidPath, "path", "must not be empty")
	case len(p) > MaxPathLen:
		return errf(CodeInvalidPath, "path", "longer than %d bytes", MaxPathLen)
	case !utf8.ValidString(p):
		return errf(CodeInvalidPath, "path", "is not valid UTF-8")
	case strings.HasPrefix(p, "/"):
		return bad("is absolute")
	case strings.ContainsRune(p, '\\'):
		return bad("contains a backslash")
	case strings.ContainsRune(p, 0):
		return errf(CodeInvalidPath, "path", "contains a NUL byte")
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return errf(CodeInvalidPath, "path", "contains a control character")
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return bad("has an empty segment")
		case ".", "..":
			return bad("contains a '.' or '..' segment")
		}
		if len(seg) > MaxSegmentLen {
			return errf(CodeInvalidPath, "path", "has a segment of %d bytes; at most %d bytes per segment (a file name) are allowed", len(seg), MaxSegmentLen)
		}
	}
	return nil
}

// ValidateMediaType checks a media type such as "application/gzip".
func ValidateMediaType(s string) *Error {
	if len(s) > MaxMediaTypeLen {
		return errf(CodeInvalidMediaType, "media_type", "longer than %d bytes", MaxMediaTypeLen)
	}
	mt, _, err := mime.ParseMediaType(s)
	if err != nil || !strings.Contains(mt, "/") {
		return errf(CodeInvalidMediaType, "media_type", "%q is not a media type", clip(s))
	}
	return nil
}

// DefaultMediaType guesses a media type from the path's extension.
func DefaultMediaType(p string) string {
	if t := mime.TypeByExtension(path.Ext(p)); t != "" {
		return t
	}
	return "application/octet-stream"
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
