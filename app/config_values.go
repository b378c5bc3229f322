package app

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// This file turns what a person writes in a config file or variable into
// typed values, and says where a wrong value came from.

// ParseSize reads a byte count: a whole number of bytes ("1048576"), or a
// number with a unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB,
// GiB, TiB (powers of 1024), case-insensitive, with an optional space
// ("10GiB", "64 MiB", "1.5GB").
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.') {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		return 0, fmt.Errorf("%q is not a size: write bytes or a number with a unit such as 64MiB or 10GiB", s)
	}
	mult, ok := map[string]float64{"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	if !ok {
		return 0, fmt.Errorf("%q has an unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, t[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a size: write bytes or a number with a unit such as 64MiB or 10GiB", s)
	}
	v := f * mult
	if v != math.Trunc(v) || v > math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	return int64(v), nil
}

// ParseDuration reads a Go duration ("90s", "1h30m") and also days and
// weeks ("7d", "2w", "1d12h"). A bare number other than 0 is refused: "30"
// could mean seconds or nanoseconds.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "0" {
		return 0, nil
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return 0, fmt.Errorf("%q has no unit: write e.g. %ss, %sm or %sh", s, t, t, t)
	}
	var total time.Duration
	rest := t
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		n, after, ok := cutNumberUnit(rest, u.suffix)
		if !ok {
			continue
		}
		if n > int64(math.MaxInt64/u.d) || total > math.MaxInt64-time.Duration(n)*u.d {
			return 0, fmt.Errorf("%q is too long a duration", s)
		}
		total += time.Duration(n) * u.d
		rest = after
	}
	if rest == "" {
		return total, nil
	}
	d, err := time.ParseDuration(rest)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write e.g. 30s, 15m, 24h or 7d", s)
	}
	if total > 0 && (d < 0 || d > math.MaxInt64-total) {
		return 0, fmt.Errorf("%q is not a duration: write e.g. 30s, 15m, 24h or 7d", s)
	}
	return total + d, nil
}

// cutNumberUnit takes a leading "<digits><unit>" off s, e.g. "7d" of
// "7d12h", but not the "d" of another unit.
func cutNumberUnit(s, unit string) (int64, string, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 || !strings.HasPrefix(s[i:], unit) {
		return 0, s, false
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, s, false
	}
	return n, s[i+len(unit):], true
}

var durationType = reflect.TypeOf(time.Duration(0))

// isSizeKey says which integer keys are byte counts (and so take units).
func isSizeKey(key string) bool {
	last := key[strings.LastIndex(key, ".")+1:]
	return strings.HasSuffix(last, "_bytes") || strings.HasPrefix(last, "bytes_")
}

// convertValue turns the raw value of key (YAML scalar or environment
// string) into what a field of type t holds, or a ConfigError saying what
// to write instead.
func convertValue(key string, v any, t reflect.Type) (any, error) {
	bad := func(err error) error { return &ConfigError{Key: key, Msg: err.Error()} }
	switch {
	case t == durationType:
		switch x := v.(type) {
		case string:
			d, err := ParseDuration(x)
			if err != nil {
				return nil, bad(err)
			}
			return d, nil
		case int, int64, uint64, float64:
			if s := fmt.Sprint(x); s != "0" {
				return nil, bad(fmt.Errorf("%s has no unit: write e.g. %ss, %sm or %sh", s, s, s, s))
			}
			return time.Duration(0), nil
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		var s string
		switch x := v.(type) {
		case string:
			s = x
		case float64:
			if x != math.Trunc(x) {
				return nil, bad(fmt.Errorf("%v is not a whole number", x))
			}
			return int64(x), nil
		default:
			return v, nil
		}
		if isSizeKey(key) {
			n, err := ParseSize(s)
			if err != nil {
				return nil, bad(err)
			}
			return n, nil
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, bad(fmt.Errorf("%q is not a whole number", s))
		}
		return n, nil
	}
	return v, nil
}

// typeAt is the Go type of the config field at a dotted key, or nil.
func typeAt(t reflect.Type, key string) reflect.Type {
	for _, part := range strings.Split(key, ".") {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			ft, ok := structKeys(t)[part]
			if !ok {
				return nil
			}
			t = ft
		case reflect.Map:
			t = t.Elem()
		default:
			return nil
		}
	}
	return t
}

// configSources remembers which layer set each key, to name it in errors.
type configSources struct {
	file    string
	raw     []byte
	fileSet map[string]bool
	envVar  map[string]string // key -> ARTIFACTSTORE_... variable
	flags   map[string]any
	doc     *yaml.Node
}

// of names where key was set: "flag", the environment variable, or
// "file:line". An indexed key ("routing.rules[1].backend") is looked up
// by its path. It returns "" for a default.
func (s *configSources) of(key string) string {
	if s == nil {
		return ""
	}
	plain := key
	if i := strings.IndexByte(plain, '['); i >= 0 {
		plain = plain[:i]
	}
	if _, ok := s.flags[key]; ok {
		return "command-line flag"
	}
	if v, ok := s.envVar[key]; ok {
		return "environment variable " + v
	}
	if s.raw == nil {
		return ""
	}
	found := s.fileSet[key] || s.fileSet[plain]
	if !found {
		for k := range s.fileSet {
			if strings.HasPrefix(k, plain+".") {
				found = true
				break
			}
		}
	}
	if !found {
		return ""
	}
	if line := s.line(key); line > 0 {
		return fmt.Sprintf("%s line %d", s.file, line)
	}
	return s.file
}

// line finds the line of key in the YAML file (0 if absent).
func (s *configSources) line(key string) int {
	if s.doc == nil {
		var doc yaml.Node
		if yaml.Unmarshal(s.raw, &doc) != nil {
			return 0
		}
		s.doc = &doc
	}
	n := s.doc
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, part := range keyPath(key) {
		switch n.Kind {
		case yaml.MappingNode:
			var next *yaml.Node
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == part {
					line, next = n.Content[i].Line, n.Content[i+1]
					break
				}
			}
			if next == nil {
				return line
			}
			n = next
		case yaml.SequenceNode:
			i, err := strconv.Atoi(part)
			if err != nil || i >= len(n.Content) {
				return line
			}
			n = n.Content[i]
			line = n.Line
		default:
			return line
		}
	}
	return line
}

// keyPath splits "routing.rules[1].backend" into routing, rules, 1, backend.
func keyPath(key string) []string {
	key = strings.NewReplacer("[", ".", "]", "").Replace(key)
	return strings.Split(key, ".")
}

// envName is the variable that sets key: server.max_body_bytes ->
// ARTIFACTSTORE_SERVER__MAX_BODY_BYTES.
func envName(key string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(key, ".", "__"))
}
