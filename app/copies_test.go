package app

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/client"
	"artifactstore/internal/digest"
	"artifactstore/internal/replication"
	"artifactstore/store"
)

// cephServer returns the Ceph RGW test server (s3test.Servers fails in CI
// when it is missing).
func cephServer(t *testing.T) s3test.Server {
	t.Helper()
	for _, s := range s3test.Servers(t) {
		if s.Name == "ceph" {
			return s
		}
	}
	t.Skip("Ceph RGW is not running (the S3 server list said why)")
	return s3test.Server{}
}

// copiesConfig is a local backend plus extra backends, routed by routing,
// with the verification schedules off and quick retries of copies.
func copiesConfig(dir, extraBackends, routing string) string {
	return strings.ReplaceAll(`data_dir: @DIR@/data
backends:
  local:
    type: local
    path: @DIR@/objects
    key_prefix: artifacts
`, "@DIR@", dir) + extraBackends + "routing:\n" + routing + verifyTestConfig + "replication:\n  retry_interval: 1s\n"
}

func writeFile(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// waitUntil polls cond until it holds or the timeout passes.
func copiesWait(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s: %s", timeout, what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// repairEvents returns the location_repaired events of digest.
func repairEvents(t *testing.T, st *store.Store, d string) []store.RepairEvent {
	t.Helper()
	evs, err := st.Events(ctxT(t), 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	var out []store.RepairEvent
	for _, e := range evs {
		if e.Type == store.EventLocationRepaired && e.Subject == d {
			var r store.RepairEvent
			if err := json.Unmarshal(e.Data, &r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
	}
	return out
}

// waitRepaired waits until the location of d on target is verified again
// after its first repair, and the events of d hold n repairs, the last
// naming source and target.
func waitRepaired(t *testing.T, env *testEnv, d digest.Digest, target, source string, n int) {
	t.Helper()
	copiesWait(t, time.Minute, "repair of "+target+" from "+source, func() (bool, string) {
		l, err := env.svc.Store.GetLocation(ctxT(t), d.String(), target)
		if err != nil || l == nil {
			return false, fmt.Sprintf("location %+v, %v", l, err)
		}
		evs := repairEvents(t, env.svc.Store, d.String())
		ok := l.Status == store.StatusVerified && l.Repairs == 1 && len(evs) == n &&
			evs[n-1].Source == source && evs[n-1].Target == target && evs[n-1].Backend == target
		return ok, fmt.Sprintf("location %+v, repair events %+v", l, evs)
	})
}

// TestSelfHealBetweenLocalAndRGW is the acceptance test of self-heal with
// the rule [local, rgw]: a flipped byte of the local copy, found by a deep
// verification, is repaired from RGW; an RGW object deleted behind the
// service's back is repaired from local. No operator action either time.
func TestSelfHealBetweenLocalAndRGW(t *testing.T) {
	srv := cephServer(t)
	dir := t.TempDir()
	bucket := srv.NewBucket(t)
	cfg := writeFile(t, filepath.Join(dir, "config.yaml"), copiesConfig(dir, s3BackendYAML("rgw", bucket), "  default_backends: [local, rgw]\n"))
	env := startServiceFile(t, cfg, nil)
	files := map[string][]byte{"a.bin": randBytes(131, 300<<10), "b.txt": []byte("a small file")}
	publish(t, env.c, manifestOf("heal", "1", "ci", "release", files), files)
	p, err := env.c.GetPackage(ctxT(t), "heal", "1")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range p.Files {
		if len(f.Locations) != 2 || f.Locations[0].Backend != "local" || f.Locations[1].Backend != "rgw" || len(f.PendingCopies) > 0 {
			t.Fatalf("file %s: locations %+v, pending %v; want a copy on local and on rgw", f.Path, f.Locations, f.PendingCopies)
		}
	}
	d := digest.FromBytes(files["a.bin"])

	// 1. Flip a byte of the local copy; a deep verification finds it
	// (and vouches for the RGW copy, which self-heal copies from).
	localCorrupter(filepath.Join(dir, "objects")).flip(t, d)
	code, out, _ := runCLI(t, "verify", "--config", cfg)
	if code != 1 || !strings.Contains(out, "FAIL mismatch") {
		t.Fatalf("deep verify after the flip: exit %d\n%s", code, out)
	}
	waitRepaired(t, env, d, "local", "rgw", 1)
	onDisk, err := os.ReadFile(filepath.Join(dir, "objects", filepath.FromSlash(backends.ObjectKey("artifacts", d))))
	if err != nil || !bytes.Equal(onDisk, files["a.bin"]) {
		t.Fatalf("the local object was not rewritten with the right bytes (%v)", err)
	}

	// 2. Delete the RGW object behind the service's back.
	s3Corrupter(srv, bucket.Bucket).remove(t, d)
	code, out, _ = runCLI(t, "verify", "--config", cfg)
	if code != 1 || !strings.Contains(out, "FAIL missing") {
		t.Fatalf("deep verify after the delete: exit %d\n%s", code, out)
	}
	waitRepaired(t, env, d, "rgw", "local", 2)
	if _, err := env.svc.Backends["rgw"].Stat(ctxT(t), d); err != nil {
		t.Fatalf("RGW object not restored: %v", err)
	}

	// Both copies read back right, and verify clean.
	_, body := get(t, env.c, client.FilePath("heal", "1", "a.bin"), nil)
	if !bytes.Equal(body, files["a.bin"]) {
		t.Fatal("fetched bytes differ after the repairs")
	}
	if code, out, _ := runCLI(t, "verify", "--config", cfg); code != 0 {
		t.Fatalf("deep verify after the repairs: exit %d\n%s", code, out)
	}
	// The counters move just after the repairs are recorded.
	copiesWait(t, 10*time.Second, "the repairs counted", func() (bool, string) {
		m := scrape(t, env)
		for _, want := range []string{
			`artifactstore_location_repairs_total{source="rgw",target="local"} 1`,
			`artifactstore_location_repairs_total{source="local",target="rgw"} 1`,
			`artifactstore_under_replicated_copies 0`,
		} {
			if !strings.Contains(m, want) {
				return false, "no " + want + " in\n" + grepLines(m, "artifactstore_location_repairs") + "\n" + grepLines(m, "artifactstore_under")
			}
		}
		return true, ""
	})
	assertConsistent(t, env.svc)
}

// TestVerifyRepairCommand: `verify --repair` without a running service
// rewrites a failed copy from the good one and exits 0; content with no
// good copy anywhere stays failed and exits 1.
func TestVerifyRepairCommand(t *testing.T) {
	dir := t.TempDir()
	spare := "  spare:\n    type: local\n    path: " + dir + "/spare\n    key_prefix: artifacts\n"
	cfg := writeFile(t, filepath.Join(dir, "config.yaml"), copiesConfig(dir, spare, "  default_backends: [local, spare]\n"))
	env := startServiceFile(t, cfg, nil)
	files := map[string][]byte{"one.bin": randBytes(141, 70<<10), "two.bin": randBytes(142, 50<<10)}
	publish(t, env.c, manifestOf("rep", "1", "ci", "release", files), files)
	env.stop()
	d1, d2 := digest.FromBytes(files["one.bin"]), digest.FromBytes(files["two.bin"])
	localCorrupter(filepath.Join(dir, "objects")).flip(t, d1)

	run := func() (int, verifyOutput, replication.Report, string) {
		code, out, errOut := runCLI(t, "verify", "--config", cfg, "--json", "--repair")
		var o struct {
			verifyOutput
			Repair replication.Report `json:"repair"`
		}
		if err := json.Unmarshal([]byte(out), &o); err != nil {
			t.Fatalf("verify --repair output (exit %d): %v\n%s\n%s", code, err, out, errOut)
		}
		return code, o.verifyOutput, o.Repair, out
	}
	code, vo, rep, out := run()
	if code != 0 || rep.Repaired != 1 || len(rep.Items) != 1 || rep.Items[0].Digest != d1.String() || rep.Items[0].Source != "spare" || rep.Items[0].Target != "local" {
		t.Fatalf("verify --repair: exit %d\n%s", code, out)
	}
	if len(vo.Reports) != 2 || vo.Reports[0].ByVerdict[store.StatusMismatch] != 1 {
		t.Fatalf("the verification before the repair did not find the flip:\n%s", out)
	}
	// Nothing left to repair: a clean run.
	if code, _, rep, out := run(); code != 0 || rep.Repaired != 0 || rep.Failed != 0 {
		t.Fatalf("second verify --repair: exit %d\n%s", code, out)
	}
	// Both copies of two.bin bad: nothing to repair from.
	localCorrupter(filepath.Join(dir, "objects")).flip(t, d2)
	localCorrupter(filepath.Join(dir, "spare")).flip(t, d2)
	if code, _, rep, out := run(); code != 1 || rep.Unrepairable != 2 || rep.Repaired != 0 {
		t.Fatalf("verify --repair with no good copy: exit %d (want 1)\n%s", code, out)
	}
}

// outageProxy forwards TCP connections to target; down closes the
// listener and every connection (the storage service looks unreachable),
// up listens again on the same address.
type outageProxy struct {
	target string
	mu     sync.Mutex
	addr   string
	ln     net.Listener
	conns  map[net.Conn]bool
}

func (p *outageProxy) up(t *testing.T) {
	t.Helper()
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	if p.conns == nil {
		p.conns = map[net.Conn]bool{}
	}
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *outageProxy) pipe(c net.Conn) {
	u, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[u] = true, true
	p.mu.Unlock()
	go func() { io.Copy(u, c); u.Close() }()
	io.Copy(c, u)
	c.Close()
}

func (p *outageProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

// TestUnderReplicatedCompletedAfterOutage: with min_copies 1, publishes go
// on during an RGW outage (committed on local, the RGW copy pending and
// shown as such), a rule without min_copies answers 503 naming rgw, and
// once RGW is back every pending copy is written and verified with no
// operator action.
func TestUnderReplicatedCompletedAfterOutage(t *testing.T) {
	srv := cephServer(t)
	dir := t.TempDir()
	bucket := srv.NewBucket(t)
	proxy := &outageProxy{target: strings.TrimPrefix(strings.TrimPrefix(srv.Endpoint, "http://"), "https://")}
	proxy.up(t)
	t.Cleanup(proxy.down)
	bucket.EndpointURL = "http://" + proxy.addr
	routing := "  default_backends: [rgw, local]\n  default_min_copies: 1\n  rules:\n    - producer: strict\n      backends: [rgw, local]\n"
	cfg := writeFile(t, filepath.Join(dir, "config.yaml"), copiesConfig(dir, s3BackendYAML("rgw", bucket), routing))
	env := startServiceFile(t, cfg, nil)

	proxy.down()
	copiesWait(t, 30*time.Second, "health shows rgw down", func() (bool, string) {
		doc, err := env.svc.health(ctxT(t))
		if err != nil {
			return false, err.Error()
		}
		for _, b := range doc.Backends {
			if b.ID == "rgw" {
				return !b.Up, fmt.Sprintf("%+v", b)
			}
		}
		return false, "no rgw in health"
	})
	var digests []digest.Digest
	for i := range 5 {
		files := map[string][]byte{"f.bin": randBytes(uint64(150+i), 10<<10)}
		_, br, _ := publish(t, env.c, manifestOf("outage", fmt.Sprint(i), "ci", "release", files), files)
		if br.Backend != "local" {
			t.Fatalf("publish during the outage uploaded to %s, want local", br.Backend)
		}
		digests = append(digests, digest.FromBytes(files["f.bin"]))
	}
	p, err := env.c.GetPackage(ctxT(t), "outage", "0")
	if err != nil {
		t.Fatal(err)
	}
	if f := p.Files[0]; len(f.Locations) != 1 || f.Locations[0].Backend != "local" || len(f.PendingCopies) != 1 || f.PendingCopies[0] != "rgw" {
		t.Fatalf("package during the outage: locations %+v, pending %v; want local and a pending rgw copy", f.Locations, f.PendingCopies)
	}
	doc, err := env.svc.health(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if doc.Status != "degraded" || doc.UnderReplicated != 5 || len(doc.PendingCopies) != 5 || doc.PendingCopies[0].Backend != "rgw" {
		t.Fatalf("health during the outage: status %s, under_replicated %d, pending %+v", doc.Status, doc.UnderReplicated, doc.PendingCopies)
	}
	if m := scrape(t, env); !strings.Contains(m, "artifactstore_under_replicated_copies 5") {
		t.Errorf("metric: %s", grepLines(m, "artifactstore_under_replicated"))
	}
	// A rule that needs both copies refuses clearly.
	strict := map[string][]byte{"s.bin": []byte("needs both")}
	_, err = env.c.Begin(ctxT(t), manifestOf("strict", "1", "strict", "release", strict))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 503 || !strings.Contains(ce.Message+ce.Backend, "rgw") {
		t.Fatalf("publish needing rgw during the outage: %v, want 503 naming rgw", err)
	}

	proxy.up(t)
	copiesWait(t, time.Minute, "pending copies completed", func() (bool, string) {
		doc, err := env.svc.health(ctxT(t))
		if err != nil {
			return false, err.Error()
		}
		return doc.UnderReplicated == 0 && len(doc.PendingCopies) == 0, fmt.Sprintf("under_replicated %d", doc.UnderReplicated)
	})
	for _, d := range digests {
		l := locationOf(t, env, d, "rgw")
		if l.Status != store.StatusVerified {
			t.Errorf("rgw copy of %s: %+v, want verified", d, l)
		}
	}
	// The counter moves just after the copies are recorded.
	copiesWait(t, 10*time.Second, "the copies counted", func() (bool, string) {
		m := scrape(t, env)
		return strings.Contains(m, `artifactstore_copies_written_total{kind="pending",target="rgw"} 5`), grepLines(m, "artifactstore_copies_written")
	})
	assertConsistent(t, env.svc)
}
