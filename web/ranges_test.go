package web

import (
	"errors"
	"testing"
)

func TestParseRange(t *testing.T) {
	cases := []struct {
		h          string
		size       int64
		ok         bool
		unsat      bool
		start, len int64
	}{
		{"bytes=0-0", 10, true, false, 0, 1},
		{"bytes=2-5", 10, true, false, 2, 4},
		{"bytes=5-", 10, true, false, 5, 5},
		{"bytes=-3", 10, true, false, 7, 3},
		{"bytes=-30", 10, true, false, 0, 10},
		{"bytes=5-100", 10, true, false, 5, 5},
		{"bytes=10-", 10, false, true, 0, 0},
		{"bytes=-0", 10, false, true, 0, 0},
		{"bytes=0-", 0, false, true, 0, 0},
		{"bytes=-5", 0, false, true, 0, 0},
		{"bytes=5-2", 10, false, false, 0, 0},
		{"bytes=a-b", 10, false, false, 0, 0},
		{"bytes=0-1,3-4", 10, false, false, 0, 0},
		{"items=0-1", 10, false, false, 0, 0},
		{"bytes=-", 10, false, false, 0, 0},
		{"bytes=99999999999999999999-", 10, false, false, 0, 0},
	}
	for _, c := range cases {
		br, ok, err := parseRange(c.h, c.size)
		if c.unsat {
			if !errors.Is(err, errUnsatisfiable) {
				t.Errorf("%q/%d: err %v, want unsatisfiable", c.h, c.size, err)
			}
			continue
		}
		if err != nil || ok != c.ok || (ok && (br.Start != c.start || br.Length != c.len)) {
			t.Errorf("%q/%d = %+v %v %v", c.h, c.size, br, ok, err)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, h := range []string{"bytes=0-0", "bytes=-5", "bytes=5-", "bytes=1-2,3-4", "bytes=x"} {
		f.Add(h, int64(100))
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -size
			if size < 0 {
				return
			}
		}
		br, ok, err := parseRange(h, size)
		if err != nil || !ok {
			return
		}
		if br.Start < 0 || br.Length <= 0 || br.Start+br.Length > size {
			t.Fatalf("parseRange(%q, %d) = %+v outside the representation", h, size, br)
		}
	})
}
