package digest

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestCopyVerified(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80,000 bytes: many chunks
	d := FromBytes(data)
	bufs := func() [][]byte { return [][]byte{make([]byte, 4096), make([]byte, 4096), make([]byte, 4096)} }
	boom := errors.New("boom")
	for _, c := range []struct {
		name string
		r    io.Reader
		want Digest
		size int64
		err  error
	}{
		{"exact", bytes.NewReader(data), d, int64(len(data)), nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data)), d, int64(len(data)), nil},
		{"empty", bytes.NewReader(nil), FromBytes(nil), 0, nil},
		{"wrong digest", bytes.NewReader(data), FromBytes([]byte("x")), int64(len(data)), ErrMismatch},
		{"short", bytes.NewReader(data[:1000]), d, int64(len(data)), io.ErrUnexpectedEOF},
		{"long", bytes.NewReader(append(append([]byte{}, data...), 'x')), d, int64(len(data)), ErrSizeMismatch},
		{"reader error", io.MultiReader(bytes.NewReader(data[:5000]), iotest.ErrReader(boom)), d, int64(len(data)), boom},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			n, err := CopyVerified(&out, c.r, c.want, c.size, bufs())
			if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, c.err)
			}
			if c.err == nil && (n != c.size || !bytes.Equal(out.Bytes(), data[:c.size])) {
				t.Fatalf("copied %d bytes (%d in w), want %d", n, out.Len(), c.size)
			}
		})
	}
	if _, err := CopyVerified(io.Discard, bytes.NewReader(data), d, int64(len(data)), [][]byte{make([]byte, 10)}); err == nil {
		t.Fatal("one buffer accepted")
	}
}
