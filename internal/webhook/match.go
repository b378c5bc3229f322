package webhook

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"

	"artifactstore/store"
)

// Matches reports whether sub wants ev: its type matches one of the type
// globs (none means all), and the producer and retention class globs, when
// set, match the event data's producer and retention_class. An event whose
// data has no producer (a storage event) never matches a producer filter;
// likewise for the retention class.
func Matches(sub *store.Subscription, ev *store.Event) bool {
	if len(sub.Types) > 0 {
		ok := false
		for _, g := range sub.Types {
			if m, _ := path.Match(g, ev.Type); m {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if sub.Producer == "" && sub.RetentionClass == "" {
		return true
	}
	var d struct {
		Producer       *string `json:"producer"`
		RetentionClass *string `json:"retention_class"`
	}
	if json.Unmarshal(ev.Data, &d) != nil {
		return false
	}
	for _, f := range []struct {
		glob string
		v    *string
	}{{sub.Producer, d.Producer}, {sub.RetentionClass, d.RetentionClass}} {
		if f.glob == "" {
			continue
		}
		if f.v == nil {
			return false
		}
		if m, _ := path.Match(f.glob, *f.v); !m {
			return false
		}
	}
	return true
}

// FieldError names the field of a subscription that is wrong.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ValidID reports whether id is 1-64 of a-z, 0-9, '-' and '_'.
func ValidID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Validate checks a subscription's id, URL and globs (not its secret).
func Validate(sub *store.Subscription) error {
	if !ValidID(sub.ID) {
		return &FieldError{"id", fmt.Sprintf("%q must be 1-64 of a-z, 0-9, '-' and '_'", sub.ID)}
	}
	u, err := url.Parse(sub.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &FieldError{"url", fmt.Sprintf("%q is not an absolute http:// or https:// URL", sub.URL)}
	}
	if u.User != nil {
		return &FieldError{"url", "must not carry credentials; the secret signs each delivery"}
	}
	for i, g := range sub.Types {
		if g == "" {
			return &FieldError{fmt.Sprintf("types[%d]", i), "must not be empty"}
		}
		if _, err := path.Match(g, ""); err != nil {
			return &FieldError{fmt.Sprintf("types[%d]", i), fmt.Sprintf("bad glob %q: %v", g, err)}
		}
	}
	for _, f := range []struct{ k, v string }{{"producer", sub.Producer}, {"retention_class", sub.RetentionClass}} {
		if _, err := path.Match(f.v, ""); err != nil {
			return &FieldError{f.k, fmt.Sprintf("bad glob %q: %v", f.v, err)}
		}
	}
	return nil
}
