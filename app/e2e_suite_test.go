package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/client"
	"artifactstore/internal/digest"
)

// testEnv is a running service on a loopback port and a client for it.
type testEnv struct {
	token  string
	svc    *Service
	c      *client.Client
	url    string
	cancel context.CancelFunc
	done   chan error
}

// startService loads cfgYAML (with dir substituted for @DIR@) and serves it.
func startService(t testing.TB, cfgYAML string) *testEnv {
	t.Helper()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	cfgYAML = strings.ReplaceAll(cfgYAML, "@DIR@", dir)
	if err := os.WriteFile(cfgFile, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServiceFile(t, cfgFile, nil)
}

func startServiceFile(t testing.TB, cfgFile string, environ []string) *testEnv {
	t.Helper()
	cfg, err := LoadConfig(LoadOptions{File: cfgFile, Environ: environ})
	if err != nil {
		t.Fatalf("load config: %v", err)
	}
	return startConfig(t, cfg)
}

func startConfig(t testing.TB, cfg *Config) *testEnv {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	quietSchedules(cfg)
	svc, err := NewService(context.Background(), cfg, log)
	if err != nil {
		t.Fatalf("start service: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	env := &testEnv{svc: svc, url: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	env.c = client.New(env.url)
	// An admin token: it may publish as any producer. Scope and producer
	// rules have their own tests (auth_test.go).
	tok, _, err := svc.Store.CreateToken(context.Background(), "e2e", "admin", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	env.c.Token, env.token = tok, tok
	go func() { env.done <- svc.Serve(ctx, ln) }()
	t.Cleanup(env.stop)
	return env
}

// post sends an authenticated POST to path.
func (e *testEnv) post(path, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, e.url+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+e.token)
	return http.DefaultClient.Do(req)
}

func (e *testEnv) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	e.svc.Close()
	e.cancel = nil
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func manifestOf(name, version, producer, class string, files map[string][]byte) client.Manifest {
	m := client.Manifest{Name: name, Version: version, Producer: producer, RetentionClass: class, Labels: map[string]string{"team": "storage"}}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		m.Files = append(m.Files, client.File{Path: p, Size: int64(len(files[p])), SHA256: sha(files[p])})
	}
	return m
}

// publish runs begin, uploads what is needed, and commits.
func publish(t testing.TB, c *client.Client, m client.Manifest, files map[string][]byte) (*client.Package, *client.BeginResponse, bool) {
	t.Helper()
	ctx := ctxT(t)
	br, err := c.Begin(ctx, m)
	if err != nil {
		t.Fatalf("begin %s@%s: %v", m.Name, m.Version, err)
	}
	if br.Status == "exists" {
		return br.Package, br, false
	}
	bySHA := map[string][]byte{}
	for _, b := range files {
		bySHA[sha(b)] = b
	}
	for _, n := range br.Needed {
		if err := c.Upload(ctx, br.UploadID, n.SHA256, n.Size, bytes.NewReader(bySHA[n.SHA256])); err != nil {
			t.Fatalf("upload %s: %v", n.Path, err)
		}
	}
	p, created, err := c.Commit(ctx, br.UploadID)
	if err != nil {
		t.Fatalf("commit %s@%s: %v", m.Name, m.Version, err)
	}
	return p, br, created
}

func get(t testing.TB, c *client.Client, path string, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	resp, err := c.Get(ctxT(t), path, hdr)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp, body
}

// snapshot is everything the registry and its backends hold.
type snapshot struct {
	counts  map[string]int
	objects map[string]map[digest.Digest]int64 // backend -> digest -> size
}

func takeSnapshot(t testing.TB, svc *Service) snapshot {
	t.Helper()
	counts, err := svc.Store.Counts(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	// The record outbox is a work queue the service drains in the
	// background (internal/recovery), not what a request left behind.
	delete(counts, "record_outbox")
	s := snapshot{counts: counts, objects: map[string]map[digest.Digest]int64{}}
	for id, b := range svc.Backends {
		m := map[digest.Digest]int64{}
		if err := b.Walk(ctxT(t), func(i backends.Info) error { m[i.Digest] = i.Size; return nil }); err != nil {
			t.Fatalf("walk %s: %v", id, err)
		}
		s.objects[id] = m
	}
	return s
}

func (s snapshot) diff(o snapshot) string {
	var out []string
	for k, v := range o.counts {
		if s.counts[k] != v {
			out = append(out, fmt.Sprintf("bbolt bucket %s: %d -> %d records", k, s.counts[k], v))
		}
	}
	for id, objs := range o.objects {
		for d := range objs {
			if _, ok := s.objects[id][d]; !ok {
				out = append(out, fmt.Sprintf("backend %s: new object %s", id, d))
			}
		}
		for d := range s.objects[id] {
			if _, ok := objs[d]; !ok {
				out = append(out, fmt.Sprintf("backend %s: object %s vanished", id, d))
			}
		}
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// assertConsistent checks that every backend holds exactly what the
// registry's locations say it holds.
func assertConsistent(t testing.TB, svc *Service) {
	t.Helper()
	snap := takeSnapshot(t, svc)
	for id := range svc.Backends {
		locs, err := svc.Store.LocationsOn(ctxT(t), id)
		if err != nil {
			t.Fatal(err)
		}
		want := map[digest.Digest]int64{}
		for _, l := range locs {
			d, err := digest.Parse(l.Digest)
			if err != nil {
				t.Fatal(err)
			}
			want[d] = l.Size
		}
		if !maps.Equal(want, snap.objects[id]) {
			t.Errorf("backend %s holds %d objects, registry locates %d there; they differ", id, len(snap.objects[id]), len(want))
			for d := range snap.objects[id] {
				if _, ok := want[d]; !ok {
					t.Errorf("  %s: %s is stored but not located", id, d)
				}
			}
			for d := range want {
				if _, ok := snap.objects[id][d]; !ok {
					t.Errorf("  %s: %s is located but not stored", id, d)
				}
			}
		}
	}
}

func errorsAs(err error, target **client.Error) bool {
	return errors.As(err, target)
}

// quietSchedules turns off the scheduled verification runs that a test left at
// their defaults. With the defaults a quick run starts at a random moment in
// the first hour after start-up, so in a long suite it can land in the middle
// of a test that counts events or objects (seen: TestE2ES3/versitygw
// BadInputLeavesNothing, "bbolt bucket events: 14 -> 23"). Tests that exercise the
// scheduler set their own intervals and keep them.
func quietSchedules(cfg *Config) {
	def, err := LoadConfig(LoadOptions{})
	if err != nil {
		return
	}
	if cfg.Verify.Quick == def.Verify.Quick {
		cfg.Verify.Quick.Interval = 0
	}
	if cfg.Verify.Deep == def.Verify.Deep {
		cfg.Verify.Deep.Interval = 0
	}
}
