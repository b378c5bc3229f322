package app

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/client"
	"artifactstore/store"
)

// backendReadBytes reads artifactstore_backend_bytes_total of one backend's reads.
func backendReadBytes(t *testing.T, env *testEnv, backend string) float64 {
	t.Helper()
	_, body := get(t, env.c, "/metrics", nil)
	m := regexp.MustCompile(`(?m)^artifactstore_backend_bytes_total\{backend="` + regexp.QuoteMeta(backend) + `",direction="read"\} ([0-9.e+]+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// TestDirectDownloads, on MinIO and Ceph RGW: with direct downloads on, a
// whole-file GET of content verified within direct_max_verified_age is
// answered 307 to a time-limited URL of the storage service, with
// Repr-Digest; content never verified, verified too long ago, or failed,
// ranges and HEAD are answered by the API itself. `artifactstore pull`
// follows the redirect (without sending its token there), verifies the
// bytes, and the service reads nothing from its backend meanwhile.
func TestDirectDownloads(t *testing.T) {
	for _, srv := range s3test.Servers(t) {
		if srv.Name != "minio" && srv.Name != "ceph" {
			continue
		}
		t.Run(srv.Name, func(t *testing.T) {
			yaml := "data_dir: @DIR@/data\nserver:\n  max_body_bytes: 33554432\nbackends:\n" +
				s3BackendYAML(srv.Name, srv.NewBucket(t)) +
				"    direct_downloads: true\n    direct_max_verified_age: 1h\n    direct_url_ttl: 2m\n" +
				"routing:\n  default: " + srv.Name + "\n"
			env := startService(t, yaml)
			files := map[string][]byte{"big.bin": randBytes(71, 3<<20+17), "small.txt": []byte("small file")}
			publish(t, env.c, manifestOf("direct", "1", "ci", "release", files), files)
			noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			do := func(method, path string, hdr http.Header) (*http.Response, []byte) {
				t.Helper()
				req, _ := http.NewRequest(method, env.url+path, nil)
				for k, v := range hdr {
					req.Header[k] = v
				}
				req.Header.Set("Authorization", "Bearer "+env.token)
				resp, err := noFollow.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp, b
			}
			big := client.FilePath("direct", "1", "big.bin")
			sum := "sha256:" + sha(files["big.bin"])
			verdict := func(at time.Time, v string) {
				t.Helper()
				err := env.svc.Store.RecordVerdict(context.Background(), store.Verdict{Digest: sum, Backend: srv.Name, Mode: store.ModeDeep, Verdict: v, At: at})
				if err != nil {
					t.Fatal(err)
				}
			}
			proxied := func(why string) {
				t.Helper()
				if resp, b := do(http.MethodGet, big, nil); resp.StatusCode != 200 || !bytes.Equal(b, files["big.bin"]) {
					t.Fatalf("%s: GET answered %d (%d bytes), want the bytes proxied", why, resp.StatusCode, len(b))
				}
			}
			proxied("never verified")
			verdict(time.Now().Add(-2*time.Hour), store.StatusVerified)
			proxied("verified 2h ago, max age 1h")

			verdict(time.Now(), store.StatusVerified)
			resp, _ := do(http.MethodGet, big, nil)
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusTemporaryRedirect || loc == "" {
				t.Fatalf("verified just now: GET answered %d, want 307 with a Location", resp.StatusCode)
			}
			if got := resp.Header.Get("Repr-Digest"); !strings.HasPrefix(got, "sha-256=:") || resp.Header.Get("Cache-Control") != "no-store" {
				t.Fatalf("redirect headers %v", resp.Header)
			}
			u, err := url.Parse(loc)
			if ep, _ := url.Parse(env.svc.Config.Backends[srv.Name].S3.EndpointURL); err != nil || u.Host != ep.Host {
				t.Fatalf("Location %q is not on the storage service %s", loc, ep.Host)
			}
			// Anyone holding the URL reads the object, without a token.
			direct, err := http.Get(loc)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(direct.Body)
			direct.Body.Close()
			if direct.StatusCode != 200 || !bytes.Equal(b, files["big.bin"]) {
				t.Fatalf("GET of the direct URL: %d, %d bytes", direct.StatusCode, len(b))
			}
			// Ranges and HEAD stay with the API.
			if resp, b := do(http.MethodGet, big, http.Header{"Range": {"bytes=10-19"}}); resp.StatusCode != 206 || !bytes.Equal(b, files["big.bin"][10:20]) {
				t.Fatalf("range GET: %d", resp.StatusCode)
			}
			if resp, _ := do(http.MethodHead, big, nil); resp.StatusCode != 200 {
				t.Fatalf("HEAD: %d", resp.StatusCode)
			}
			// The small file was never verified: proxied, in the same pull.
			before := backendReadBytes(t, env, srv.Name)
			dst := t.TempDir()
			code, out, errOut := runClient(t, env.token, env.url, "pull", "--to", dst, "direct@1")
			if code != 0 {
				t.Fatalf("pull: exit %d\n%s\n%s", code, out, errOut)
			}
			for p, want := range files {
				got, err := os.ReadFile(filepath.Join(dst, p))
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("pulled %s differs: %v", p, err)
				}
			}
			if read := backendReadBytes(t, env, srv.Name) - before; read != float64(len(files["small.txt"])) {
				t.Fatalf("the service read %v bytes from its backend during the pull, want only the small file's %d", read, len(files["small.txt"]))
			}
			// A failed verdict ends direct downloads of that content.
			verdict(time.Now(), store.StatusMismatch)
			if resp, _ := do(http.MethodGet, big, nil); resp.StatusCode == http.StatusTemporaryRedirect {
				t.Fatal("content with a mismatch verdict was redirected")
			}
		})
	}
}

// TestDirectDownloadConfig: the keys are refused where they cannot work
// and a redirect without a verification age is refused.
func TestDirectDownloadConfig(t *testing.T) {
	for name, tc := range map[string]struct{ backend, want string }{
		"local backend":         {"  l:\n    type: local\n    path: /tmp/x\n    direct_downloads: true\n    direct_max_verified_age: 1h\n", "not a key of a local backend"},
		"no max verified age":   {s3Entry + "    direct_downloads: true\n", "direct_max_verified_age: required"},
		"age without enabling":  {s3Entry + "    direct_max_verified_age: 1h\n", "only apply with direct_downloads: true"},
		"url lifetime too long": {s3Entry + "    direct_downloads: true\n    direct_max_verified_age: 1h\n    direct_url_ttl: 200h\n", "direct_url_ttl"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			f := filepath.Join(dir, "c.yaml")
			os.WriteFile(f, []byte("data_dir: "+dir+"\nbackends:\n"+tc.backend+"routing:\n  default: "+strings.Fields(tc.backend)[0][:1]+"\n"), 0o600)
			_, err := LoadConfig(LoadOptions{File: f, Environ: []string{"AK=a", "SK=b"}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

const s3Entry = "  s:\n    type: s3\n    endpoint_url: http://127.0.0.1:9\n    bucket: some-bucket\n    access_key_ref: env:AK\n    secret_key_ref: env:SK\n"
