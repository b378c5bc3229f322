package web

import (
	"errors"
	"strconv"
	"strings"
)

// errUnsatisfiable means a syntactically valid range selects nothing.
var errUnsatisfiable = errors.New("range not satisfiable")

// byteRange is [Start, Start+Length).
type byteRange struct {
	Start, Length int64
}

// parseRange parses a Range header against a representation of size bytes.
//
// It returns ok=false when the header should be ignored and the whole
// representation served (absent, not "bytes=", malformed, or several
// ranges, which RFC 9110 allows a server to ignore), and errUnsatisfiable
// when a single valid range selects no byte of the representation.
func parseRange(h string, size int64) (br byteRange, ok bool, err error) {
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || strings.Contains(spec, ",") {
		return byteRange{}, false, nil
	}
	spec = strings.TrimSpace(spec)
	first, last, found := strings.Cut(spec, "-")
	if !found {
		return byteRange{}, false, nil
	}
	if first == "" {
		// Suffix range: the last N bytes.
		n, perr := parseNonNeg(last)
		if perr != nil {
			return byteRange{}, false, nil
		}
		if n == 0 {
			return byteRange{}, false, errUnsatisfiable
		}
		if n > size {
			n = size
		}
		if n == 0 {
			return byteRange{}, false, errUnsatisfiable
		}
		return byteRange{Start: size - n, Length: n}, true, nil
	}
	start, perr := parseNonNeg(first)
	if perr != nil {
		return byteRange{}, false, nil
	}
	end := size - 1
	if last != "" {
		e, perr := parseNonNeg(last)
		if perr != nil || e < start {
			return byteRange{}, false, nil
		}
		if e < end {
			end = e
		}
	}
	if start >= size {
		return byteRange{}, false, errUnsatisfiable
	}
	return byteRange{Start: start, Length: end - start + 1}, true, nil
}

func parseNonNeg(s string) (int64, error) {
	if s == "" || len(s) > 19 {
		return 0, strconv.ErrSyntax
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, strconv.ErrSyntax
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
