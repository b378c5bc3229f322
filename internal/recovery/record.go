// Package recovery makes the store recoverable from its backends alone:
// it keeps a manifest record of every package beside its content in each
// backend that holds it (written from the store's record outbox),
// compares those records with the database (db check), writes database
// snapshots into a backend, and rebuilds a database from a snapshot and
// the records (recover).
package recovery

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"artifactstore/internal/digest"
	"artifactstore/internal/manifest"
	"artifactstore/store"
)

// RecordFormat is the version of the manifest record layout.
const RecordFormat = 1

// maxRecordBytes bounds a record read from a backend (a package of 10,000
// files with long paths stays far below).
const maxRecordBytes = 32 << 20

// Errors callers match with errors.Is.
var (
	// ErrTampered: a record's own digest does not match its contents.
	ErrTampered = errors.New("manifest record does not match its digest")
	// ErrBadRecord: a record that is not a manifest record of this format.
	ErrBadRecord = errors.New("not a valid manifest record")
)

// Record is the manifest record of one package: everything the database
// knows of it that cannot be read back from the content, and its own
// digest.
type Record struct {
	Format         int               `json:"format"`
	Name           string            `json:"name"`
	Version        string            `json:"version"`
	Producer       string            `json:"producer"`
	RetentionClass string            `json:"retention_class"`
	Labels         map[string]string `json:"labels,omitempty"`
	CreatedAt      time.Time         `json:"created_at"`
	// Seq is the package's commit sequence in the database that wrote the
	// record; recovery imports records in this order.
	Seq   uint64       `json:"seq"`
	Files []RecordFile `json:"files"`
	// Digest is "sha256:<hex>" of the record encoded with Digest empty.
	Digest string `json:"digest"`
}

// RecordFile is one file of a recorded package.
type RecordFile struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	Digest    string `json:"digest"`
	MediaType string `json:"media_type"`
	// Backend is where the file was routed at commit.
	Backend string `json:"backend"`
}

// RecordPrefix is the directory of every manifest record.
const RecordPrefix = "packages/"

// RecordName is the record name of name@version:
// packages/<name>/<version>.json (names and versions never contain a
// slash).
func RecordName(name, version string) string {
	return RecordPrefix + name + "/" + version + ".json"
}

// ParseRecordName is the inverse of RecordName.
func ParseRecordName(rn string) (name, version string, ok bool) {
	rest, ok := strings.CutPrefix(rn, RecordPrefix)
	if !ok {
		return "", "", false
	}
	name, file, ok := strings.Cut(rest, "/")
	if !ok || name == "" || strings.Contains(file, "/") {
		return "", "", false
	}
	version, ok = strings.CutSuffix(file, ".json")
	return name, version, ok && version != ""
}

// RecordOf returns the record of a committed package (Digest set).
func RecordOf(p *store.Package) *Record {
	r := &Record{Format: RecordFormat, Name: p.Name, Version: p.Version, Producer: p.Producer,
		RetentionClass: p.RetentionClass, Labels: p.Labels, CreatedAt: p.CreatedAt.UTC(), Seq: p.Seq}
	if len(r.Labels) == 0 {
		r.Labels = nil
	}
	for _, f := range p.Files {
		r.Files = append(r.Files, RecordFile{Path: f.Path, Size: f.Size, Digest: f.Digest, MediaType: f.MediaType, Backend: f.Backend})
	}
	r.Digest = r.selfDigest()
	return r
}

// selfDigest hashes the record's canonical encoding with Digest empty.
// encoding/json writes struct fields in declaration order and map keys
// sorted, so the encoding of equal records is equal.
func (r *Record) selfDigest() string {
	c := *r
	c.Digest = ""
	b, err := json.Marshal(&c)
	if err != nil {
		panic(err) // only strings, numbers, a time and a string map
	}
	return digest.FromBytes(b).String()
}

// Encode returns the record's bytes as stored in a backend.
func (r *Record) Encode() []byte {
	b, err := json.MarshalIndent(r, "", " ")
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// Package returns the package the record describes (Seq and CreatedAt as
// recorded).
func (r *Record) Package() store.Package {
	p := store.Package{Name: r.Name, Version: r.Version, Producer: r.Producer, RetentionClass: r.RetentionClass,
		Labels: r.Labels, CreatedAt: r.CreatedAt, Seq: r.Seq}
	for _, f := range r.Files {
		p.Files = append(p.Files, store.File{Path: f.Path, Size: f.Size, Digest: f.Digest, MediaType: f.MediaType, Backend: f.Backend})
	}
	return p
}

// Same reports whether two records describe the same package (digests
// aside).
func (r *Record) Same(o *Record) bool { return r.selfDigest() == o.selfDigest() }

// validate applies the rules a publish applies, so nothing recovery
// imports could not have been published.
func (r *Record) validate() error {
	for _, err := range []*manifest.Error{manifest.ValidateName(r.Name), manifest.ValidateVersion(r.Version),
		manifest.ValidateProducer(r.Producer), manifest.ValidateRetentionClass(r.RetentionClass),
		manifest.ValidateLabels(r.Labels)} {
		if err != nil {
			return err
		}
	}
	if len(r.Files) == 0 {
		return errors.New("no files")
	}
	for _, f := range r.Files {
		if err := manifest.ValidatePath(f.Path); err != nil {
			return err
		}
		if _, err := digest.Parse(f.Digest); err != nil || f.Size < 0 {
			return fmt.Errorf("file %q: bad digest or size", f.Path)
		}
	}
	return nil
}

// ReadRecord decodes and checks a record: strict JSON of this format,
// every field valid, and its digest matching (else ErrTampered).
func ReadRecord(rd io.Reader) (*Record, error) {
	raw, err := io.ReadAll(io.LimitReader(rd, maxRecordBytes+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxRecordBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadRecord, maxRecordBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var r Record
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the record", ErrBadRecord)
	}
	if r.Format != RecordFormat {
		return nil, fmt.Errorf("%w: format %d, this binary reads %d", ErrBadRecord, r.Format, RecordFormat)
	}
	if want := r.selfDigest(); r.Digest != want {
		return nil, fmt.Errorf("%w: it says %s, its contents hash to %s", ErrTampered, r.Digest, want)
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	return &r, nil
}
