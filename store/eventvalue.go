package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
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

// encodeEvent returns the stored value of e (its Seq, SpecVersion, Source
// and DataContentType are not stored).
func encodeEvent(e Event) ([]byte, error) {
	v := eventValue{Event: e}
	for _, cut := range []string{cutDigest, cutNameVersion} {
		if p := subjectPrefix(cut, e.Subject); p != nil && bytes.HasPrefix(e.Data, p) {
			v.Data = append([]byte{'{'}, e.Data[len(p):]...)
			v.Cut = cut
			break
		}
	}
	return encode(v)
}

// decodeEventKV decodes an events entry, filling in what encodeEvent left
// out; source is the store's event source.
func decodeEventKV(k, v []byte, source string) (Event, error) {
	var ev eventValue
	if len(k) != 8 {
		return Event{}, fmt.Errorf("event key %q: %w", k, ErrCorrupt)
	}
	if err := decode(v, &ev); err != nil {
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
