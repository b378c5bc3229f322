package client

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// storageAndAPI starts a storage service that serves body and records the
// Authorization headers it saw, and an API that redirects every download
// there with the given Repr-Digest.
func storageAndAPI(t *testing.T, body []byte, reprDigest string) (api *httptest.Server, auths func() []string) {
	var mu sync.Mutex
	var seen []string
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write(body)
	}))
	t.Cleanup(storage.Close)
	api = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer secret-token" {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Repr-Digest", reprDigest)
		w.Header().Set("Location", storage.URL+"/object?signature=x")
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	t.Cleanup(api.Close)
	return api, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seen...) }
}

func reprOf(b []byte) (string, string) {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"
}

// TestDownloadFollowsARedirectWithoutTheToken: a download the API
// redirects to a storage service's direct URL is fetched there without our
// token (both servers are on 127.0.0.1, where net/http alone would forward
// it) and verified against the manifest's digest.
func TestDownloadFollowsARedirectWithoutTheToken(t *testing.T) {
	body := []byte("bytes served straight from the storage service")
	hexSum, repr := reprOf(body)
	api, auths := storageAndAPI(t, body, repr)
	c := New(api.URL)
	c.Token = "secret-token"
	dest := filepath.Join(t.TempDir(), "f")
	f := PackageFile{Path: "f", Size: int64(len(body)), SHA256: hexSum, Digest: "sha256:" + hexSum}
	if _, err := c.Download(context.Background(), "p", "1", f, dest, 1, nil); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dest)
	if err != nil || string(got) != string(body) {
		t.Fatalf("downloaded %q, %v", got, err)
	}
	if a := auths(); len(a) != 1 || a[0] != "" {
		t.Fatalf("storage service saw Authorization %q; want one request without it", a)
	}
}

// TestDownloadRefusesARedirectOfAnotherDigest: the redirect must announce
// the manifest's digest, and bytes that do not hash to it are refused too;
// either way nothing is left at the destination.
func TestDownloadRefusesARedirectOfAnotherDigest(t *testing.T) {
	body := []byte("the right bytes")
	hexSum, repr := reprOf(body)
	_, otherRepr := reprOf([]byte("other"))
	wrong := []byte("the wrong bytes")
	for name, tc := range map[string]struct {
		served []byte
		repr   string
	}{
		"redirect announces another digest": {body, otherRepr},
		"redirect without Repr-Digest":      {body, ""},
		"storage serves other bytes":        {wrong, repr},
	} {
		t.Run(name, func(t *testing.T) {
			api, _ := storageAndAPI(t, tc.served, tc.repr)
			c := New(api.URL)
			c.Token = "secret-token"
			dest := filepath.Join(t.TempDir(), "f")
			f := PackageFile{Path: "f", Size: int64(len(body)), SHA256: hexSum, Digest: "sha256:" + hexSum}
			_, err := c.Download(context.Background(), "p", "1", f, dest, 2, nil)
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("err = %v, want ErrDigestMismatch", err)
			}
			for _, p := range []string{dest, dest + ".partial"} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("%s left behind (%v)", p, err)
				}
			}
		})
	}
}
