package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// runClient runs a client subcommand against url with a token from the
// environment, as CI jobs do.
func runClient(t *testing.T, token, url string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), append([]string{"artifactstore", args[0], "--server", url}, args[1:]...),
		Env{Stdout: &out, Stderr: &errb, Environ: append(os.Environ(), "ARTIFACTSTORE_TOKEN="+token)})
	return code, out.String(), errb.String()
}

func writeTree(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	for p, b := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func receivedUploadBytes(t *testing.T, env *testEnv) float64 {
	t.Helper()
	_, body := get(t, env.c, "/metrics", nil)
	m := regexp.MustCompile(`(?m)^artifactstore_http_received_bytes_total\{route="PUT /v1/uploads/\{id\}/blobs/\{digest\}"\} ([0-9.e+]+)$`).FindSubmatch(body)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

func TestClientPushPullRoundTrip(t *testing.T) {
	env := startService(t, strings.Replace(localConfig, "max_body_bytes: 33554432", "max_body_bytes: 104857600", 1))
	src := t.TempDir()
	files := map[string][]byte{
		"empty":                {},
		"README.md":            []byte("# hello\n"),
		"bin/tool":             randBytes(1, 300<<10),
		"lib/deep/nested/x.so": randBytes(2, 50<<20),
	}
	writeTree(t, src, files)
	code, out, errOut := runClient(t, env.token, env.url, "push", "--producer", "ci", "--retention-class", "release", "--label", "git.sha=abc", "--json", "tool", "1.0", src)
	if code != 0 {
		t.Fatalf("push: exit %d\n%s\n%s", code, out, errOut)
	}
	var pr pushResult
	json.Unmarshal([]byte(out), &pr)
	if pr.Files != 4 || pr.UploadedBytes != pr.TotalBytes || pr.Package == nil || pr.Package.Labels["git.sha"] != "abc" {
		t.Fatalf("push result %+v", pr)
	}
	dst := t.TempDir()
	code, out, errOut = runClient(t, env.token, env.url, "pull", "--to", dst, "tool@1.0")
	if code != 0 {
		t.Fatalf("pull: exit %d\n%s\n%s", code, out, errOut)
	}
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(p)))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("pulled %s differs: %v", p, err)
		}
	}
	// Second push sharing the big file reports the skipped bytes, and the
	// server receives only the new ones.
	before := receivedUploadBytes(t, env)
	files2 := map[string][]byte{"lib/deep/nested/x.so": files["lib/deep/nested/x.so"], "CHANGELOG": []byte("v1.1: new")}
	src2 := t.TempDir()
	writeTree(t, src2, files2)
	code, out, errOut = runClient(t, env.token, env.url, "push", "--producer", "ci", "--retention-class", "release", "tool", "1.1", src2)
	if code != 0 || !strings.Contains(out, "skipped 52428800 bytes already stored") || !strings.Contains(out, "uploaded 9 bytes") {
		t.Fatalf("second push: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := receivedUploadBytes(t, env) - before; got != 9 {
		t.Fatalf("server received %v upload bytes for the second push, want 9", got)
	}
	// Pushing the same again is a no-op.
	code, out, _ = runClient(t, env.token, env.url, "push", "--producer", "ci", "--retention-class", "release", "tool", "1.1", src2)
	if code != 0 || !strings.Contains(out, "already published") {
		t.Fatalf("repeat push: exit %d %s", code, out)
	}
	// Different content under the same version fails with the conflict.
	os.WriteFile(filepath.Join(src2, "CHANGELOG"), []byte("changed"), 0o644)
	code, _, errOut = runClient(t, env.token, env.url, "push", "--producer", "ci", "--retention-class", "release", "tool", "1.1", src2)
	if code != 1 || !strings.Contains(errOut, "conflict") {
		t.Fatalf("conflicting push: exit %d %s", code, errOut)
	}
	// ls, show and events.
	code, out, _ = runClient(t, env.token, env.url, "ls", "--name", "tool")
	if code != 0 || !strings.Contains(out, "1.0") || !strings.Contains(out, "1.1") {
		t.Fatalf("ls: %d %s", code, out)
	}
	code, out, _ = runClient(t, env.token, env.url, "show", "tool@1.1")
	if code != 0 || !strings.Contains(out, "lib/deep/nested/x.so") || !strings.Contains(out, "local:stored") {
		t.Fatalf("show: %d %s", code, out)
	}
	code, out, _ = runClient(t, env.token, env.url, "events", "--after", "0")
	if code != 0 || !strings.Contains(out, "v1.package.created\ttool@1.1") {
		t.Fatalf("events: %d %s", code, out)
	}
	code, _, errOut = runClient(t, env.token, env.url, "show", "tool@9.9")
	if code != 1 || !strings.Contains(errOut, "not_found") {
		t.Fatalf("show of a missing package: %d %s", code, errOut)
	}
}

// faultProxy forwards to a server; for file GETs it can cut the first
// response half-way or flip a byte, and records every Range asked for.
type faultProxy struct {
	target  string
	cut     bool
	flip    bool
	mu      sync.Mutex
	ranges  []string
	served  int64
	fileGET int
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, _ := http.NewRequest(r.Method, p.target+r.URL.RequestURI(), r.Body)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		http.Error(w, err.Error(), 502)
		return
	}
	defer resp.Body.Close()
	isFile := strings.Contains(r.URL.Path, "/files/")
	p.mu.Lock()
	n := 0
	if isFile {
		p.fileGET++
		n = p.fileGET
		p.ranges = append(p.ranges, r.Header.Get("Range"))
	}
	p.mu.Unlock()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	body, _ := io.ReadAll(resp.Body)
	if isFile && p.flip && len(body) > 0 {
		body[len(body)/3] ^= 0x40
	}
	if isFile && p.cut && n == 1 {
		half := len(body) / 2
		p.mu.Lock()
		p.served += int64(half)
		p.mu.Unlock()
		w.Write(body[:half])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // cut the connection mid-body
	}
	if isFile { // counted before the client can see the last byte
		p.mu.Lock()
		p.served += int64(len(body))
		p.mu.Unlock()
	}
	w.Write(body)
}

func TestClientPullResumesAfterCut(t *testing.T) {
	env := startService(t, localConfig)
	big := randBytes(9, 8<<20)
	publish(t, env.c, manifestOf("resumable", "1", "ci", "release", map[string][]byte{"big.bin": big}), map[string][]byte{"big.bin": big})
	px := &faultProxy{target: env.url, cut: true}
	srv := httptest.NewServer(px)
	defer srv.Close()
	dst := t.TempDir()
	code, out, errOut := runClient(t, env.token, srv.URL, "pull", "--to", dst, "resumable@1")
	if code != 0 {
		t.Fatalf("pull through a cutting proxy: exit %d\n%s\n%s", code, out, errOut)
	}
	got, _ := os.ReadFile(filepath.Join(dst, "big.bin"))
	if !bytes.Equal(got, big) {
		t.Fatal("resumed download differs")
	}
	px.mu.Lock()
	defer px.mu.Unlock()
	if len(px.ranges) != 2 || px.ranges[0] != "" || px.ranges[1] != "bytes="+strconv.Itoa(len(big)/2)+"-" {
		t.Fatalf("ranges requested: %q; want a full GET, then the rest from byte %d", px.ranges, len(big)/2)
	}
	if px.served != int64(len(big)) {
		t.Fatalf("proxy served %d bytes in all for a %d-byte file; the resume fetched more than the rest", px.served, len(big))
	}
	if !strings.Contains(errOut, "resumed at byte") {
		t.Fatalf("no resume note:\n%s", errOut)
	}
}

func TestClientPullDetectsCorruption(t *testing.T) {
	env := startService(t, localConfig)
	data := randBytes(10, 1<<20)
	publish(t, env.c, manifestOf("corrupt", "1", "ci", "release", map[string][]byte{"d/f.bin": data}), map[string][]byte{"d/f.bin": data})
	srv := httptest.NewServer(&faultProxy{target: env.url, flip: true})
	defer srv.Close()
	dst := t.TempDir()
	code, _, errOut := runClient(t, env.token, srv.URL, "pull", "--to", dst, "corrupt@1")
	if code != 1 || !strings.Contains(errOut, "does not match its digest") {
		t.Fatalf("pull of corrupted bytes: exit %d\n%s", code, errOut)
	}
	if n := countFiles(t, dst); n != 0 {
		t.Fatalf("%d files left after a corrupted download", n)
	}
}

// TestClientPullRefusesHostilePaths: a manifest naming a path outside the
// target directory (which our server never accepts) is refused anyway.
func TestClientPullRefusesHostilePaths(t *testing.T) {
	for _, hostile := range []string{"../escape.txt", "/etc/escape.txt", "a/../../escape.txt", "a\\..\\..\\escape.txt", "./x/../../escape.txt"} {
		t.Run(hostile, func(t *testing.T) {
			fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.Contains(r.URL.Path, "/files/") {
					w.Write([]byte("pwned"))
					return
				}
				json.NewEncoder(w).Encode(map[string]any{"name": "evil", "version": "1", "files": []map[string]any{
					{"path": "ok.txt", "size": 5, "sha256": sha([]byte("pwned"))},
					{"path": hostile, "size": 5, "sha256": sha([]byte("pwned"))},
				}})
			}))
			defer fake.Close()
			parent := t.TempDir()
			dst := filepath.Join(parent, "target")
			os.MkdirAll(dst, 0o755)
			code, _, errOut := runClient(t, "", fake.URL, "pull", "--to", dst, "evil@1")
			if code != 1 || !strings.Contains(errOut, "unsafe path") {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			if n := countFiles(t, parent); n != 0 {
				t.Fatalf("%d files written", n)
			}
			if _, err := os.Stat("/etc/escape.txt"); err == nil {
				t.Fatal("/etc/escape.txt exists")
			}
		})
	}
}
