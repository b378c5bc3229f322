package client

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fullAnswer is what the server sends for one full GET: body, and whether
// it cuts the connection before the last heldBack bytes (as web/ does when
// the copy it reads fails its hash, marking that location "mismatch").
type fullAnswer struct {
	body []byte
	cut  bool
}

// copiesServer plays the server's file endpoint over copies of one file:
// the i-th full GET (no range) is answered with full[i] (the last one
// again once they run out); a GET with a Range and a matching If-Range is
// answered 206 from rangeCopy, unhashed, like the real server's range
// reads of a verified-good location.
type copiesServer struct {
	good      []byte
	full      []fullAnswer
	rangeCopy []byte

	mu     sync.Mutex
	ranges []string // Range header of each request, "" for a full GET
	fulls  int
}

const heldBack = 4 << 10 // what the server holds back of a copy that fails its hash

func (s *copiesServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hexSum, _ := reprOf(s.good)
	etag := `"sha256:` + hexSum + `"`
	s.mu.Lock()
	s.ranges = append(s.ranges, r.Header.Get("Range"))
	ranged := r.Header.Get("Range") != "" && r.Header.Get("If-Range") == etag
	var a fullAnswer
	if !ranged {
		a = s.full[min(s.fulls, len(s.full)-1)]
		s.fulls++
	}
	s.mu.Unlock()
	w.Header().Set("ETag", etag)
	if ranged { // http.ServeContent honours Range and If-Range as web/ does
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(s.rangeCopy))
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(http.StatusOK)
	if !a.cut {
		w.Write(a.body)
		return
	}
	w.Write(a.body[:len(a.body)-heldBack])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler) // cut the connection: the client sees a short body
}

func (s *copiesServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ranges)
}

func twoCopies(t *testing.T) (good, corrupt []byte, f PackageFile) {
	t.Helper()
	good = make([]byte, 256<<10)
	rand.New(rand.NewSource(1)).Read(good)
	corrupt = slices.Clone(good)
	corrupt[1000] ^= 0x40 // well inside the prefix the server sends before it cuts
	hexSum, _ := reprOf(good)
	return good, corrupt, PackageFile{Path: "f.bin", Size: int64(len(good)), SHA256: hexSum, Digest: "sha256:" + hexSum}
}

// TestDownloadStartsOverWhenAResumedDownloadFailsItsDigest: the first read
// comes from a corrupt copy, which the server cuts off before its last
// chunk; the client resumes with a range the server serves from the good
// copy, and the whole-file hash of the corrupt prefix plus the good suffix
// fails. That mismatch is not the good copy's: the client drops the
// partial file and fetches the whole file again, which verifies.
func TestDownloadStartsOverWhenAResumedDownloadFailsItsDigest(t *testing.T) {
	good, corrupt, f := twoCopies(t)
	s := &copiesServer{good: good, full: []fullAnswer{{corrupt, true}, {good, false}}, rangeCopy: good}
	srv := httptest.NewServer(s)
	defer srv.Close()
	dest := filepath.Join(t.TempDir(), "f.bin")
	res, err := New(srv.URL).Download(context.Background(), "p", "1", f, dest, 5, nil)
	if err != nil {
		t.Fatalf("download with a good copy left: %v (requests %q)", err, s.seen())
	}
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, good) {
		t.Fatalf("downloaded %d bytes (equal: %v), %v", len(got), bytes.Equal(got, good), err)
	}
	if _, err := os.Stat(dest + ".partial"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("partial file left behind (%v)", err)
	}
	cut := len(good) - heldBack
	want := []string{"", "bytes=" + strconv.Itoa(cut) + "-", ""}
	if rs := s.seen(); !slices.Equal(rs, want) {
		t.Fatalf("requests %q; want a full GET, the rest from byte %d, then a full GET again", rs, cut)
	}
	if res.Restarts != 1 || res.ResumedFrom != 0 || res.Bytes != int64(cut+heldBack+len(good)) {
		t.Fatalf("result %+v; want 1 restart, not resumed, %d bytes fetched", res, cut+heldBack+len(good))
	}
}

// TestDownloadDigestMismatchStaysFinal: a mismatch of a download that did
// not resume (every byte from one response) is not retried; a resumed
// mismatch is retried from byte 0 only within the attempts, and a full
// download that fails after it is final. Nothing is left at the
// destination.
func TestDownloadDigestMismatchStaysFinal(t *testing.T) {
	good, corrupt, f := twoCopies(t)
	cut := "bytes=" + strconv.Itoa(len(good)-heldBack) + "-"
	for name, tc := range map[string]struct {
		full     []fullAnswer
		attempts int
		want     []string
	}{
		"wrong bytes sent whole, not resumed":             {[]fullAnswer{{corrupt, false}}, 5, []string{""}},
		"resumed mismatch on the last attempt":            {[]fullAnswer{{corrupt, true}, {good, false}}, 2, []string{"", cut}},
		"the full download after a resumed one fails too": {[]fullAnswer{{corrupt, true}, {corrupt, false}}, 5, []string{"", cut, ""}},
	} {
		t.Run(name, func(t *testing.T) {
			s := &copiesServer{good: good, full: tc.full, rangeCopy: good}
			srv := httptest.NewServer(s)
			defer srv.Close()
			dest := filepath.Join(t.TempDir(), "f.bin")
			_, err := New(srv.URL).Download(context.Background(), "p", "1", f, dest, tc.attempts, nil)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("err = %v, want ErrDigestMismatch", err)
			}
			if rs := s.seen(); !slices.Equal(rs, tc.want) {
				t.Fatalf("requests %q, want %q", rs, tc.want)
			}
			for _, p := range []string{dest, dest + ".partial"} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s left behind (%v)", p, err)
				}
			}
		})
	}
}
