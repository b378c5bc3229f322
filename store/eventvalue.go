package store

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Events are stored without what every event of a store shares or what
// another field already holds (the migration "event values without their
// constant fields"): the sequence is the key, specversion and
// datacontenttype are constants, the source is the store's
// (Options.EventSource), and the data's leading fields that repeat the
// subject (a location event's digest, a package event's name and
// version) are cut and put back on read. Readers go through
// decodeEventKV, so events written before (with every field) read as
// they were, and a new event reads byte for byte as it would have in the
// old form.

const (
	eventSpecVersion = "1.0"
	eventContentType = "application/json"

	cutDigest      = "d"
	cutNameVersion = "nv"
)

// eventValue is the stored form of an Event: the outer, empty fields
// shadow the embedded ones and are omitted.
type eventValue struct {
	Event
	Seq             uint64 `json:"seq,omitempty"`
	SpecVersion     string `json:"specversion,omitempty"`
	Source          string `json:"source,omitempty"`
	DataContentType string `json:"datacontenttype,omitempty"`
	// Cut names the data's leading fields taken from the subject:
	// cutDigest ({"digest":subject,...}) or cutNameVersion
	// ({"name":N,"version":V,...} with subject N@V). Empty: data is whole.
	Cut string `json:"cut,omitempty"`
}

// subjectPrefix returns the data prefix a subject stands for under cut.
func subjectPrefix(cut, subject string) []byte {
	str := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	switch cut {
	case cutDigest:
		return []byte(`{"digest":` + str(subject) + `,`)
	case cutNameVersion:
		name, version, ok := strings.Cut(subject, "@")
		if !ok {
			return nil
		}
		return []byte(`{"name":` + str(name) + `,"version":` + str(version) + `,`)
	}
	return nil
}

// encodeEvent returns the stored value of e in the binary form
// (encodingEvent): its Seq, SpecVersion, Source and DataContentType are
// not stored, and the data's fields the subject repeats are cut.
func encodeEvent(e Event) ([]byte, error) {
	data, cut := []byte(e.Data), byte(0)
	for i, c := range []string{cutDigest, cutNameVersion} {
		if p := subjectPrefix(c, e.Subject); p != nil && bytes.HasPrefix(data, p) {
			data = append([]byte{'{'}, data[len(p):]...)
			cut = byte(i + 1)
			break
		}
	}
	return appendEventBinary(make([]byte, 0, 64+len(e.Subject)+len(data)), e, cut, data), nil
}

// The binary event form (the migration "events, blob and location values in a binary form"):
//
//	encodingEvent
//	flags (1): bit 0 id is 16 bytes (32 lowercase hex digits), bit 1
//	  subject is 32 bytes (a sha256 digest), bits 2-3 the data cut
//	  (0 none, 1 cutDigest, 2 cutNameVersion)
//	type code (1): index+1 in eventTypes, 0: uvarint length and the type
//	id: 16 bytes, or uvarint length and the id
//	time: varint Unix seconds, uvarint nanoseconds (UTC)
//	subject: 32 bytes, or uvarint length and the subject
//	data: the rest (JSON, cut as the flags say)
const encodingEvent byte = 2

const (
	evIDBytes      = 1 << 0
	evSubjectBytes = 1 << 1
	evCutShift     = 2
)

// eventTypes are the event types with a one-byte code (index+1). Never
// reorder or remove: append.
var eventTypes = []string{EventLocationCreated, EventPackageCreated, EventPackageDeleted, EventLocationDeleted,
	EventPackageRecovered, EventLocationRepaired, EventLocationVerified, EventLocationFailed, EventVerificationRunCompleted}

const digestPrefix = "sha256:"

// lowerHex reports whether s is n bytes of lowercase hex digits.
func lowerHex(s string, n int) bool {
	if len(s) != 2*n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func appendEventBinary(b []byte, e Event, cut byte, data []byte) []byte {
	flags := cut << evCutShift
	idRaw := lowerHex(e.ID, 16)
	if idRaw {
		flags |= evIDBytes
	}
	subjRaw := strings.HasPrefix(e.Subject, digestPrefix) && lowerHex(e.Subject[len(digestPrefix):], 32)
	if subjRaw {
		flags |= evSubjectBytes
	}
	b = appendCoded(append(b, encodingEvent, flags), eventTypes, e.Type)
	if idRaw {
		b, _ = hex.AppendDecode(b, []byte(e.ID))
	} else {
		b = appendString(b, e.ID)
	}
	t := e.Time.UTC()
	b = binary.AppendVarint(b, t.Unix())
	b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	if subjRaw {
		b, _ = hex.AppendDecode(b, []byte(e.Subject[len(digestPrefix):]))
	} else {
		b = appendString(b, e.Subject)
	}
	return append(b, data...)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// valueReader reads the fields of a binary value; the first error sticks.
type valueReader struct {
	b   []byte
	err error
}

func (r *valueReader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated value", ErrCorrupt)
	}
	r.b = nil
}

func (r *valueReader) bytes(n int) []byte {
	if r.err != nil || n < 0 || len(r.b) < n {
		r.fail()
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *valueReader) byte() byte {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *valueReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *valueReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *valueReader) string() string {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return ""
	}
	return string(r.bytes(int(n)))
}

// appendCoded appends s as its one-byte code in names (index+1), or as
// code 0 followed by the string when names does not hold it.
func appendCoded(b []byte, names []string, s string) []byte {
	if i := slices.Index(names, s); i >= 0 {
		return append(b, byte(i+1))
	}
	return appendString(append(b, 0), s)
}

// coded reads what appendCoded wrote; ok is false (and code says which)
// for a code names does not have.
func (r *valueReader) coded(names []string) (s string, code byte, ok bool) {
	switch code = r.byte(); {
	case code == 0:
		return r.string(), 0, true
	case int(code) <= len(names):
		return names[code-1], code, true
	}
	return "", code, false
}

// decodeEventBinary decodes the binary form into e (Seq, SpecVersion,
// Source and DataContentType are the caller's) and returns the cut.
func decodeEventBinary(v []byte, e *Event) (string, error) {
	r := valueReader{b: v[1:]}
	flags := r.byte()
	typ, code, ok := r.coded(eventTypes)
	if !ok {
		return "", fmt.Errorf("%w: unknown event type code %d", ErrCorrupt, code)
	}
	e.Type = typ
	if flags&evIDBytes != 0 {
		e.ID = hex.EncodeToString(r.bytes(16))
	} else {
		e.ID = r.string()
	}
	sec := r.varint()
	nsec := r.uvarint()
	if nsec >= 1e9 {
		return "", fmt.Errorf("%w: event time nanoseconds %d", ErrCorrupt, nsec)
	}
	e.Time = time.Unix(sec, int64(nsec)).UTC()
	if flags&evSubjectBytes != 0 {
		e.Subject = digestPrefix + hex.EncodeToString(r.bytes(32))
	} else {
		e.Subject = r.string()
	}
	if r.err != nil {
		return "", r.err
	}
	e.Data = append(json.RawMessage(nil), r.b...)
	switch (flags >> evCutShift) & 3 {
	case 0:
		return "", nil
	case 1:
		return cutDigest, nil
	case 2:
		return cutNameVersion, nil
	}
	return "", fmt.Errorf("%w: unknown event data cut", ErrCorrupt)
}

// decodeEventKV decodes an events entry, filling in what encodeEvent left
// out; source is the store's event source.
func decodeEventKV(k, v []byte, source string) (Event, error) {
	var ev eventValue
	if len(k) != 8 {
		return Event{}, fmt.Errorf("event key %q: %w", k, ErrCorrupt)
	}
	if len(v) > 0 && v[0] == encodingEvent {
		cut, err := decodeEventBinary(v, &ev.Event)
		if err != nil {
			return Event{}, err
		}
		ev.Cut = cut
	} else if err := decode(v, &ev); err != nil {
		return Event{}, err
	}
	e := ev.Event
	// The shadowing fields hold what an event of the old form stored.
	e.Seq, e.SpecVersion, e.Source, e.DataContentType = ev.Seq, ev.SpecVersion, ev.Source, ev.DataContentType
	if e.Seq == 0 {
		e.Seq = binary.BigEndian.Uint64(k)
	}
	if e.SpecVersion == "" {
		e.SpecVersion = eventSpecVersion
	}
	if e.Source == "" {
		e.Source = source
	}
	if e.DataContentType == "" {
		e.DataContentType = eventContentType
	}
	if ev.Cut != "" {
		p := subjectPrefix(ev.Cut, e.Subject)
		if p == nil || len(e.Data) < 2 || e.Data[0] != '{' {
			return Event{}, fmt.Errorf("event %d: data cut %q does not fit subject %q: %w", e.Seq, ev.Cut, e.Subject, ErrCorrupt)
		}
		e.Data = append(p, e.Data[1:]...)
	}
	return e, nil
}

// eventType returns an events value's type without decoding the rest
// (false if the value is undecodable).
func eventType(v []byte) (string, bool) {
	switch {
	case len(v) >= 3 && v[0] == encodingEvent:
		r := valueReader{b: v[2:]}
		t, _, ok := r.coded(eventTypes)
		return t, ok && r.err == nil
	case len(v) > 0 && v[0] == encodingV1:
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(v[1:], &head) != nil {
			return "", false
		}
		return head.Type, true
	}
	return "", false
}
