package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"artifactstore/internal/client"
)

// Tests of issue 20 (hostile clients): every bad input gets a clear error
// and changes nothing; nothing the server says leaks more than it should.

// rawDo sends one request with the env's admin token (unless hdr sets
// Authorization, or sets it to "-" for none) and returns status and body.
func rawDo(t testing.TB, env *testEnv, method, path string, hdr http.Header, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, env.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	switch req.Header.Get("Authorization") {
	case "":
		req.Header.Set("Authorization", "Bearer "+env.token)
	case "-":
		req.Header.Del("Authorization")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, out
}

func errCode(body []byte) (code, msg string) {
	var e struct{ Error client.Error }
	json.Unmarshal(body, &e)
	return e.Error.Code, e.Error.Message
}

// formBody builds a one-request publish with a raw manifest part and files.
func formBody(manifestJSON string, files map[string][]byte) ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormField("manifest")
	fw.Write([]byte(manifestJSON))
	for p, b := range files {
		part, _ := mw.CreatePart(map[string][]string{"Content-Disposition": {fmt.Sprintf(`form-data; name="file"; filename="%s"`, p)}})
		part.Write(b)
	}
	mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// TestStrictManifests (finding 4): a manifest that encoding/json would
// store changed (bad UTF-8 as U+FFFD, the last duplicate key, a key in the
// wrong case) is refused with an error naming the field, through the
// staged protocol and the form alike, and nothing is stored.
func TestStrictManifests(t *testing.T) {
	env := startService(t, localConfig)
	f := []byte("payload")
	file := fmt.Sprintf(`{"path":"ok","size":%d,"sha256":"%s"}`, len(f), sha(f))
	head := `"version":"1","producer":"ci","retention_class":"release"`
	cases := []struct {
		name, staged, form, field string
	}{
		{"duplicate key", `{"name":"dup",` + head + `,"files":[{"path":"../evil","path":"ok","size":7,"sha256":"` + sha(f) + `"}]}`,
			`{"name":"dup","name":"dup2",` + head + `}`, "path"},
		{"invalid UTF-8 label", `{"name":"utf",` + head + `,"labels":{"team":"a` + "\xff" + `"},"files":[` + file + `]}`,
			`{"name":"utf",` + head + `,"labels":{"team":"a` + "\xff" + `"}}`, "labels.team"},
		{"key in upper case", `{"NAME":"upper",` + head + `,"files":[` + file + `]}`,
			`{"NAME":"upper",` + head + `}`, "NAME"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := rawDo(t, env, "POST", "/v1/uploads", http.Header{"Content-Type": {"application/json"}}, []byte(c.staged))
			code, msg := errCode(body)
			if resp.StatusCode != 400 || code != "invalid_json" || !strings.Contains(msg, c.field) {
				t.Fatalf("staged: %d %s; want 400 invalid_json naming %q", resp.StatusCode, body, c.field)
			}
			fb, ct := formBody(c.form, map[string][]byte{"ok": f})
			resp, body = rawDo(t, env, "POST", "/v1/packages", http.Header{"Content-Type": {ct}}, fb)
			code, msg = errCode(body)
			wantField := c.field
			if c.name == "duplicate key" {
				wantField = "name"
			}
			if resp.StatusCode != 400 || code != "invalid_json" || !strings.Contains(msg, wantField) {
				t.Fatalf("form: %d %s; want 400 invalid_json naming %q", resp.StatusCode, body, wantField)
			}
		})
	}
	resp, body := rawDo(t, env, "GET", "/v1/packages", nil, nil)
	if resp.StatusCode != 200 || strings.Contains(string(body), `"name"`) {
		t.Fatalf("something was stored: %s", body)
	}
	if n := countFiles(t, env.svc.Config.Backends["local"].Path); n != 0 {
		t.Fatalf("%d objects stored", n)
	}
}

// TestLongPathSegmentRefused (finding 7): a path segment longer than 255
// bytes (which pull could not write) is refused at publish, by both
// protocols.
func TestLongPathSegmentRefused(t *testing.T) {
	env := startService(t, localConfig)
	long := strings.Repeat("n", 1024) // one segment, within the 1024-byte path limit
	files := map[string][]byte{long: []byte("x")}
	_, err := env.c.Begin(ctxT(t), manifestOf("longseg", "1", "ci", "release", files))
	if client.Code(err) != "invalid_path" || !strings.Contains(err.Error(), "255") {
		t.Fatalf("staged begin: %v; want invalid_path naming the 255-byte limit", err)
	}
	fb, ct := formBody(`{"name":"longseg","version":"1","producer":"ci","retention_class":"release"}`, files)
	resp, body := rawDo(t, env, "POST", "/v1/packages", http.Header{"Content-Type": {ct}}, fb)
	if code, _ := errCode(body); resp.StatusCode != 400 || code != "invalid_path" {
		t.Fatalf("form: %d %s", resp.StatusCode, body)
	}
	ok := map[string][]byte{strings.Repeat("s", 255): []byte("y")}
	publish(t, env.c, manifestOf("okseg", "1", "ci", "release", ok), ok)
}

// TestTwoRangeHeaders (finding 7): two Range header fields are refused,
// not answered by honouring the first.
func TestTwoRangeHeaders(t *testing.T) {
	env := startService(t, localConfig)
	files := map[string][]byte{"f": []byte("0123456789")}
	publish(t, env.c, manifestOf("ranges", "1", "ci", "release", files), files)
	resp, body := rawDo(t, env, "GET", client.FilePath("ranges", "1", "f"), http.Header{"Range": {"bytes=0-1", "bytes=5-6"}}, nil)
	if code, _ := errCode(body); resp.StatusCode != 400 || code != "invalid_range" {
		t.Fatalf("two Range headers: %d %s; want 400 invalid_range", resp.StatusCode, body)
	}
	resp, body = rawDo(t, env, "GET", client.FilePath("ranges", "1", "f"), http.Header{"Range": {"bytes=5-6"}}, nil)
	if resp.StatusCode != 206 || string(body) != "56" {
		t.Fatalf("one Range header: %d %q", resp.StatusCode, body)
	}
}

// TestDownloadCacheControl (finding 6): authenticated downloads are
// private (a shared cache must not give them to clients without a token);
// public only when anonymous reads are on.
func TestDownloadCacheControl(t *testing.T) {
	for _, anon := range []bool{false, true} {
		t.Run(fmt.Sprintf("anonymous_read=%v", anon), func(t *testing.T) {
			cfg := localConfig
			if anon {
				cfg += "auth:\n  anonymous_read: true\n"
			}
			env := startService(t, cfg)
			files := map[string][]byte{"f": []byte("cache me if you may")}
			publish(t, env.c, manifestOf("cc", "1", "ci", "release", files), files)
			paths := []string{client.FilePath("cc", "1", "f"), "/v1/blobs/sha256:" + sha(files["f"])}
			for _, p := range paths {
				for _, req := range []struct {
					method string
					hdr    http.Header
					status int
				}{
					{"GET", nil, 200},
					{"HEAD", nil, 200},
					{"GET", http.Header{"If-None-Match": {`"sha256:` + sha(files["f"]) + `"`}}, 304},
					{"GET", http.Header{"Range": {"bytes=0-3"}}, 206},
				} {
					resp, _ := rawDo(t, env, req.method, p, req.hdr, nil)
					cc := resp.Header.Get("Cache-Control")
					if resp.StatusCode != req.status {
						t.Fatalf("%s %s: %d", req.method, p, resp.StatusCode)
					}
					if anon {
						if !strings.HasPrefix(cc, "public") {
							t.Fatalf("%s %s (%d): Cache-Control %q with anonymous reads; want public", req.method, p, req.status, cc)
						}
					} else if !strings.HasPrefix(cc, "private") || strings.Contains(cc, "public") || resp.Header.Get("Vary") != "Authorization" {
						t.Fatalf("%s %s (%d): Cache-Control %q Vary %q; want private, Vary: Authorization", req.method, p, req.status, cc, resp.Header.Get("Vary"))
					}
				}
			}
		})
	}
}

// TestReadyzSaysOnlyWhichBackend (finding 6): /readyz needs no token, so it
// names a backend that is down and nothing else (no endpoint, storage target or
// error text); the details are in the log and in the authenticated
// /v1/health. It uses the cached health: a burst of probes costs at most
// a few backend checks.
func TestReadyzSaysOnlyWhichBackend(t *testing.T) {
	t.Setenv("RDY_KEY", "k")
	t.Setenv("RDY_SECRET", "s")
	env := startService(t, `
data_dir: @DIR@/data
backends:
  local:
    type: local
    path: @DIR@/objects
  offline:
    type: s3
    endpoint_url: http://127.0.0.1:1
    bucket: hidden-target-name
    access_key_ref: env:RDY_KEY
    secret_key_ref: env:RDY_SECRET
    max_retries: 1
routing:
  default: local
`)
	resp, body := rawDo(t, env, "GET", "/readyz", http.Header{"Authorization": {"-"}}, nil)
	var ready struct {
		Status string            `json:"status"`
		Down   map[string]string `json:"backends_down"`
	}
	if err := json.Unmarshal(body, &ready); err != nil || resp.StatusCode != 503 || ready.Down["offline"] != "down" || len(ready.Down) != 1 {
		t.Fatalf("/readyz = %d %s", resp.StatusCode, body)
	}
	for _, leak := range []string{"127.0.0.1:1", "hidden-target-name", "connection refused", "dial"} {
		if strings.Contains(string(body), leak) {
			t.Fatalf("/readyz reveals %q: %s", leak, body)
		}
	}
	resp, body = rawDo(t, env, "GET", "/v1/health", nil, nil)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "127.0.0.1:1") {
		t.Fatalf("/v1/health (authenticated) should carry the details: %d %s", resp.StatusCode, body)
	}
	before := healthChecks(t, env, "local")
	for i := 0; i < 50; i++ {
		if resp, _ := rawDo(t, env, "GET", "/readyz", http.Header{"Authorization": {"-"}}, nil); resp.StatusCode != 503 {
			t.Fatalf("probe %d: %d", i, resp.StatusCode)
		}
	}
	// 50 probes within well under the 2 s cache lifetime: at most a check
	// or two of the local backend (one if the cache expired meanwhile).
	if n := healthChecks(t, env, "local") - before; n > 2 {
		t.Fatalf("50 /readyz probes ran %d backend health checks; want the cached result", n)
	}
}

// healthChecks reads how many health checks backend ran from /metrics.
func healthChecks(t *testing.T, env *testEnv, backend string) int {
	t.Helper()
	_, body := rawDo(t, env, "GET", "/metrics", nil, nil)
	re := regexp.MustCompile(`(?m)^artifactstore_backend_operation_duration_seconds_count\{backend="` + backend + `",operation="health"\} (\d+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
