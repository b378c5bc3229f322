package store

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// Package values are written in a binary form (encodingBinary; the
// migration "package values in a binary form") when the package's time is
// in UTC, which is how the store writes it; otherwise in the JSON form,
// which keeps the zone. decodePackage reads both, so packages written
// before read as they did.
//
//	encodingBinary
//	flags (1): bit 0 files is nil (JSON null)
//	name, version, producer, retention class: uvarint length and bytes
//	created_at: varint Unix seconds, uvarint nanoseconds
//	seq: uvarint
//	labels: uvarint count, then key and value of each, keys sorted
//	files: uvarint count, then of each: path; varint size; digest (tag 1
//	  and 32 bytes for "sha256:" and 64 lowercase hex digits, tag 0 and
//	  the string otherwise); media type (index+1 in mediaTypes, 0 and the
//	  string otherwise); backend
//
// Strings are uvarint length and bytes.

// mediaTypes have a one-byte code (index+1). Never reorder: append.
var mediaTypes = []string{"application/octet-stream", "text/plain", "application/json", "application/gzip",
	"application/x-tar", "application/zip", "application/vnd.oci.image.layer.v1.tar+gzip", "text/plain; charset=utf-8"}

const pkgFilesNil = 1 << 0

func encodePackage(p *Package) ([]byte, error) {
	if !isUTC(p.CreatedAt) {
		return encode(p)
	}
	flags := byte(0)
	if p.Files == nil {
		flags |= pkgFilesNil
	}
	b := make([]byte, 0, 96+64*len(p.Files)+len(p.Name)+len(p.Version))
	b = append(b, encodingBinary, flags)
	for _, s := range []string{p.Name, p.Version, p.Producer, p.RetentionClass} {
		b = appendString(b, s)
	}
	b = appendTime(b, p.CreatedAt)
	b = binary.AppendUvarint(b, p.Seq)
	keys := make([]string, 0, len(p.Labels))
	for k := range p.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendString(appendString(b, k), p.Labels[k])
	}
	b = binary.AppendUvarint(b, uint64(len(p.Files)))
	for _, f := range p.Files {
		b = binary.AppendVarint(appendString(b, f.Path), f.Size)
		if strings.HasPrefix(f.Digest, digestPrefix) && lowerHex(f.Digest[len(digestPrefix):], 32) {
			b, _ = hex.AppendDecode(append(b, 1), []byte(f.Digest[len(digestPrefix):]))
		} else {
			b = appendString(append(b, 0), f.Digest)
		}
		b = appendCoded(b, mediaTypes, f.MediaType)
		b = appendString(b, f.Backend)
	}
	return b, nil
}

// decodePackage decodes a packages value of either form into p.
func decodePackage(v []byte, p *Package) error {
	if len(v) == 0 || v[0] != encodingBinary {
		return decode(v, p)
	}
	r := valueReader{b: v[1:]}
	var out Package
	flags := r.byte()
	out.Name, out.Version, out.Producer, out.RetentionClass = r.string(), r.string(), r.string(), r.string()
	out.CreatedAt = r.time()
	out.Seq = r.uvarint()
	if n := r.count(); n > 0 {
		out.Labels = make(map[string]string, n)
		for i := 0; i < n && r.err == nil; i++ {
			k := r.string()
			out.Labels[k] = r.string()
		}
	}
	n := r.count()
	if flags&pkgFilesNil == 0 {
		out.Files = make([]File, 0, n)
	}
	for i := 0; i < n && r.err == nil; i++ {
		var f File
		f.Path = r.string()
		f.Size = r.varint()
		switch r.byte() {
		case 0:
			f.Digest = r.string()
		case 1:
			f.Digest = digestPrefix + hex.EncodeToString(r.bytes(32))
		default:
			r.fail()
		}
		mt, _, ok := r.coded(mediaTypes)
		if !ok {
			r.fail()
		}
		f.MediaType = mt
		f.Backend = r.string()
		out.Files = append(out.Files, f)
	}
	if r.err == nil && len(r.b) != 0 {
		return fmt.Errorf("%w: %d bytes after a package value", ErrCorrupt, len(r.b))
	}
	if r.err != nil {
		return r.err
	}
	*p = out
	return nil
}

// count reads a uvarint count of items that take at least one byte each.
func (r *valueReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}
