package client

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Retryable reports whether err is worth retrying: a network error, a cut
// connection, or a 5xx/429 answer.
func Retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Status >= 500 || e.Status == http.StatusTooManyRequests
	}
	var rm *resumedMismatch
	if errors.As(err, &rm) {
		return true // the partial file was dropped: the next attempt starts over
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "broken pipe")
}

// Retry calls fn up to attempts times while it fails with a retryable
// error, waiting 200 ms, 400 ms, ... (at most 5 s) between attempts.
func Retry(ctx context.Context, attempts int, fn func() error) error {
	wait := 200 * time.Millisecond
	var err error
	for i := 0; i < attempts; i++ {
		if err = fn(); err == nil || !Retryable(err) {
			return err
		}
		if i == attempts-1 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
	return err
}

// ErrUnsafePath is returned for a manifest path that would land outside
// the target directory.
var ErrUnsafePath = errors.New("unsafe path")

// SafeJoin joins a package path below dir, refusing anything that is
// absolute, has '..', '.', empty segments, backslashes or NUL, or that
// would resolve outside dir.
func SafeJoin(dir, p string) (string, error) {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
		return "", fmt.Errorf("%w %q", ErrUnsafePath, p)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("%w %q", ErrUnsafePath, p)
		}
	}
	full := filepath.Join(dir, filepath.FromSlash(p))
	rel, err := filepath.Rel(dir, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", fmt.Errorf("%w %q", ErrUnsafePath, p)
	}
	return full, nil
}

// ErrDigestMismatch means downloaded bytes did not hash to the manifest's
// digest; the partial file was removed.
var ErrDigestMismatch = errors.New("downloaded content does not match its digest")

// resumedMismatch is a digest mismatch of a download that resumed a
// partial file: some of its bytes came from an earlier attempt (perhaps
// from a copy the server found corrupt and cut off, while the rest came
// from a range read of another copy), so the mismatch says nothing about
// the copy now served. Download removes the partial file and Retryable
// lets the next attempt fetch the whole file again. It unwraps to the
// ErrDigestMismatch error.
type resumedMismatch struct{ err error }

func (e *resumedMismatch) Error() string { return e.err.Error() }
func (e *resumedMismatch) Unwrap() error { return e.err }

// DownloadResult tells what a download did.
type DownloadResult struct {
	Path         string
	Bytes        int64 // bytes fetched over the network by this call
	ResumedFrom  int64 // where the last resumed attempt started (0: never resumed, or started over since)
	Restarts     int   // resumed attempts whose digest failed, after which the file was fetched again from byte 0
	AlreadyThere bool  // the final file existed with the right digest
}

// Download fetches one package file into dest. It writes dest+".partial",
// hashing as it writes; an interrupted download is resumed with a Range
// request (after re-hashing what is on disk); the file is renamed into
// place only after the digest matches. When the digest of a resumed
// download fails (bytes from an earlier attempt, perhaps from a corrupt
// copy the server cut off, joined to a range read of another copy), the
// partial file is removed and the next attempt, if attempts are left,
// fetches the whole file again; a mismatch of a download that did not
// resume is final. On a final mismatch the partial file is removed.
// progress, if set, receives byte counts as they arrive.
func (c *Client) Download(ctx context.Context, name, version string, f PackageFile, dest string, attempts int, progress func(int64)) (DownloadResult, error) {
	res := DownloadResult{Path: dest}
	if ok, _ := fileHasDigest(dest, f.Size, f.SHA256); ok {
		res.AlreadyThere = true
		return res, nil
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return res, err
	}
	partial := dest + ".partial"
	err := Retry(ctx, attempts, func() error {
		n, resumed, err := c.downloadOnce(ctx, name, version, f, partial, progress)
		res.Bytes += n
		if resumed > 0 {
			res.ResumedFrom = resumed
		}
		var rm *resumedMismatch
		if errors.As(err, &rm) {
			if rerr := os.Remove(partial); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				return fmt.Errorf("%w (removing the partial file to start over: %v)", rm.err, rerr) // final
			}
			res.ResumedFrom = 0
			res.Restarts++
		}
		return err
	})
	if err != nil {
		if errors.Is(err, ErrDigestMismatch) {
			os.Remove(partial)
		}
		return res, err
	}
	return res, os.Rename(partial, dest)
}

func (c *Client) downloadOnce(ctx context.Context, name, version string, f PackageFile, partial string, progress func(int64)) (int64, int64, error) {
	h := sha256.New()
	have, err := rehash(partial, h)
	if err != nil {
		return 0, 0, err
	}
	if have > f.Size {
		os.Remove(partial)
		h.Reset()
		have = 0
	}
	out, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, have, err
	}
	defer out.Close()
	var n int64
	if have < f.Size {
		hdr := http.Header{}
		if have > 0 {
			hdr.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
			hdr.Set("If-Range", `"`+f.Digest+`"`)
		}
		resp, err := c.Get(ctx, FilePath(name, version, f.Path), hdr)
		if err != nil {
			return 0, have, err
		}
		defer resp.Body.Close()
		if err := checkRedirectDigest(resp, f); err != nil {
			return 0, have, err
		}
		switch {
		case resp.StatusCode == http.StatusPartialContent && have > 0:
		case resp.StatusCode == http.StatusOK:
			if have > 0 { // the server ignored the range: start over
				if err := out.Truncate(0); err != nil {
					return 0, have, err
				}
				h.Reset()
				have = 0
			}
		default:
			return 0, have, decodeError(resp)
		}
		w := io.MultiWriter(out, h)
		if progress != nil {
			w = io.MultiWriter(w, progressWriter(progress))
		}
		n, err = io.CopyBuffer(w, resp.Body, make([]byte, 1<<20))
		if err != nil {
			out.Sync()
			return n, have, fmt.Errorf("download %s: %w", f.Path, err)
		}
	}
	if err := out.Sync(); err != nil {
		return n, have, err
	}
	got := hex.EncodeToString(h.Sum(nil))
	if have+n != f.Size || got != f.SHA256 {
		err := fmt.Errorf("%s: %w: got %d bytes hashing to sha256:%s, want %d bytes sha256:%s", f.Path, ErrDigestMismatch, have+n, got, f.Size, f.SHA256)
		if have > 0 { // the first have bytes came from an earlier attempt
			err = &resumedMismatch{err}
		}
		return n, have, err
	}
	return n, have, nil
}

// checkRedirectDigest: when the server sent the download elsewhere (a
// direct URL of its storage service), the redirect must carry the
// Repr-Digest of the file the manifest names; the bytes fetched from
// there are then hashed like any others.
func checkRedirectDigest(resp *http.Response, f PackageFile) error {
	var first *http.Response // the API's own redirect, the first of the chain
	for r := resp.Request; r != nil && r.Response != nil; r = r.Response.Request {
		first = r.Response
	}
	if first == nil {
		return nil
	}
	want, err := hex.DecodeString(f.SHA256)
	if err != nil {
		return fmt.Errorf("%s: manifest digest %q: %w", f.Path, f.SHA256, err)
	}
	if rd := first.Header.Get("Repr-Digest"); rd != "sha-256=:"+base64.StdEncoding.EncodeToString(want)+":" {
		return fmt.Errorf("%s: %w: the server's redirect announces Repr-Digest %q, the manifest says sha256:%s", f.Path, ErrDigestMismatch, rd, f.SHA256)
	}
	return nil
}

type progressWriter func(int64)

func (p progressWriter) Write(b []byte) (int, error) { p(int64(len(b))); return len(b), nil }

// rehash feeds an existing partial file into h and returns its size.
func rehash(path string, h hash.Hash) (int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.CopyBuffer(h, f, make([]byte, 1<<20))
}

func fileHasDigest(path string, size int64, sha string) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != size {
		return false, err
	}
	h := sha256.New()
	if _, err := rehash(path, h); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == sha, nil
}
