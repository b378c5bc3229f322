package digest

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestParse(t *testing.T) {
	good := FromBytes([]byte("x")).String()
	if d, err := Parse(good); err != nil || d.String() != good {
		t.Fatalf("Parse(%q) = %v, %v", good, d, err)
	}
	for _, bad := range []string{"", "sha256", "sha256:", "md5:" + strings.Repeat("a", 32), "sha256:" + strings.Repeat("A", 64),
		"sha256:" + strings.Repeat("a", 63), "sha256:" + strings.Repeat("a", 65), "sha256:" + strings.Repeat("g", 64), "SHA256:" + strings.Repeat("a", 64)} {
		if _, err := Parse(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestVerifier(t *testing.T) {
	data := []byte("hello, verifier")
	d := FromBytes(data)
	cases := []struct {
		name string
		r    io.Reader
		want error
	}{
		{"exact", bytes.NewReader(data), nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data)), nil},
		{"data with EOF", iotest.DataErrReader(bytes.NewReader(data)), nil},
		{"short", bytes.NewReader(data[:5]), ErrSizeMismatch},
		{"long", bytes.NewReader(append(append([]byte{}, data...), '!')), ErrSizeMismatch},
		{"flipped", bytes.NewReader(append([]byte{data[0] ^ 1}, data[1:]...)), ErrMismatch},
		{"read error", iotest.ErrReader(io.ErrClosedPipe), io.ErrClosedPipe},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := NewVerifier(c.r, d, int64(len(data)))
			got, err := io.ReadAll(v)
			if c.want == nil {
				if err != nil || !bytes.Equal(got, data) || !v.Verified() {
					t.Fatalf("err %v, verified %v", err, v.Verified())
				}
				return
			}
			if !errors.Is(err, c.want) || v.Verified() {
				t.Fatalf("err %v, want %v", err, c.want)
			}
		})
	}
}

// The mismatch surfaces on the Read that delivers the last byte, so a
// caller that stops reading after exactly size bytes still sees it.
func TestVerifierFailsOnLastRead(t *testing.T) {
	data := []byte("abcdef")
	wrong := FromBytes([]byte("abcdeX"))
	v := NewVerifier(iotest.OneByteReader(bytes.NewReader(data)), wrong, 6)
	buf := make([]byte, 1)
	for i := 0; i < 6; i++ {
		n, err := v.Read(buf)
		if i < 5 && (n != 1 || err != nil) {
			t.Fatalf("read %d: %d, %v", i, n, err)
		}
		if i == 5 && (n != 0 || !errors.Is(err, ErrMismatch)) {
			t.Fatalf("read of the last byte: %d, %v; want ErrMismatch", n, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("ab", 32))
	f.Add("sha256:")
	f.Add("md5:abc")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Parse(s)
		if err != nil {
			return
		}
		if d.String() != s {
			t.Fatalf("Parse(%q).String() = %q", s, d.String())
		}
	})
}
