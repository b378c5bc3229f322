package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"artifactstore/internal/webhook"
	"artifactstore/store"
)

const hookSecret = "test-secret-0123456789abcdef"

// hookReceiver is a webhook receiver that checks every delivery the way
// docs/API.md tells receivers to, and fails the first failFirst valid ones.
type hookReceiver struct {
	failFirst int
	mu        sync.Mutex
	valid     int           // deliveries with a valid signature
	accepted  []store.Event // answered 2xx, in arrival order
	problems  []string
	attempts  []string // attempt header of every valid delivery
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := webhook.Verify([]byte(hookSecret), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
		h.problems = append(h.problems, "signature: "+err.Error())
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != webhook.ContentType {
		h.problems = append(h.problems, "content type "+ct)
	}
	var e store.Event
	if err := json.Unmarshal(body, &e); err != nil || e.SpecVersion != "1.0" || e.ID == "" || e.Type == "" || e.Source == "" {
		h.problems = append(h.problems, fmt.Sprintf("not a structured CloudEvent: %v %s", err, body))
	}
	h.valid++
	h.attempts = append(h.attempts, r.Header.Get(webhook.HeaderAttempt))
	if h.valid <= h.failFirst {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	h.accepted = append(h.accepted, e)
	w.WriteHeader(http.StatusNoContent)
}

// unique returns the accepted events with redeliveries dropped, and fails
// if the deliveries were out of order.
func (h *hookReceiver) unique(t *testing.T) []store.Event {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := map[string]bool{}
	var out []store.Event
	for _, e := range h.accepted {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		if e.Type != webhook.TestEventType && len(out) > 0 && e.Seq <= out[len(out)-1].Seq {
			t.Fatalf("delivery out of order: seq %d after %d", e.Seq, out[len(out)-1].Seq)
		}
		out = append(out, e)
	}
	return out
}

func (h *hookReceiver) count(t *testing.T) int { return len(h.unique(t)) }

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hookConfig is localConfig with webhook settings for tests: short
// backoff and failing time.
func hookConfig(t *testing.T, subs string) string {
	t.Helper()
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	if err := os.WriteFile(secretFile, []byte(hookSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return localConfig + `
verify:
  deep:
    interval: 0s
  quick:
    interval: 0s
webhooks:
  timeout: 2s
  initial_backoff: 10ms
  max_backoff: 100ms
  failing_after: 300ms
  subscriptions:
` + strings.ReplaceAll(subs, "@SECRET@", "file:"+secretFile)
}

// blackhole accepts TCP connections and never answers.
func blackhole(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return "http://" + ln.Addr().String() + "/hook"
}

// TestWebhookRetriesDeliverEveryEventInOrder: a receiver that fails the
// first 5 deliveries and then accepts gets every matching event exactly in
// order, at least once, each with a valid signature; a second subscription
// whose receiver never answers does not hold the first one back.
func TestWebhookRetriesDeliverEveryEventInOrder(t *testing.T) {
	rcv := &hookReceiver{failFirst: 5}
	srv := &http.Server{Handler: rcv}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	env := startService(t, hookConfig(t, fmt.Sprintf(`    ci:
      url: http://%s/hook
      types: ["v1.package.*"]
      producer: "ci-*"
      secret: "@SECRET@"
    dead:
      url: %s
      secret: "@SECRET@"
`, ln.Addr(), blackhole(t))))
	var want []string
	for i := 0; i < 12; i++ {
		producer := "ci-a"
		if i%4 == 3 {
			producer = "other" // filtered out by the producer glob
		} else {
			want = append(want, fmt.Sprintf("hooked@%d", i))
		}
		publishSmall(t, env.c, "hooked", fmt.Sprint(i), producer)
	}
	waitUntil(t, 20*time.Second, "every matching event", func() bool { return rcv.count(t) >= len(want) })
	got := rcv.unique(t)
	var subjects []string
	for _, e := range got {
		if e.Type != "v1.package.created" {
			t.Fatalf("delivered %s, which the type glob excludes", e.Type)
		}
		subjects = append(subjects, e.Subject)
	}
	if strings.Join(subjects, " ") != strings.Join(want, " ") {
		t.Fatalf("delivered\n%v\nwant\n%v", subjects, want)
	}
	rcv.mu.Lock()
	problems, attempts := rcv.problems, strings.Join(rcv.attempts[:6], ",")
	rcv.mu.Unlock()
	if len(problems) > 0 {
		t.Fatalf("receiver problems: %v", problems)
	}
	if attempts != "1,2,3,4,5,6" {
		t.Fatalf("attempt headers of the first event: %s, want 1..6", attempts)
	}
	// The position is saved and the metrics count what happened.
	waitUntil(t, 5*time.Second, "the cursor to be saved", func() bool {
		sub, err := env.svc.Store.GetSubscription(context.Background(), "ci")
		return err == nil && sub.Cursor == got[len(got)-1].Seq || err == nil && sub.Cursor > got[len(got)-1].Seq
	})
	_, metrics := get(t, env.c, "/metrics", nil)
	for _, line := range []string{
		`artifactstore_webhook_delivered_total{subscription="ci"} 9`,
		`artifactstore_webhook_failed_attempts_total{subscription="ci"} 5`,
		`artifactstore_webhook_lag_events{subscription="ci"} 0`,
	} {
		if !strings.Contains(string(metrics), line) {
			t.Errorf("metrics lack %q", line)
		}
	}
	// The blackholed subscription (one attempt times out after 2s) is
	// reported failing in /v1/health and the metrics, at its place.
	var doc healthDocument
	var body []byte
	waitUntil(t, 10*time.Second, "the blackholed subscription to be failing", func() bool {
		_, body = get(t, env.c, "/v1/health", nil)
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatal(err)
		}
		return len(doc.Webhooks) == 2 && doc.Webhooks[1].Failing
	})
	if doc.Status != "degraded" || doc.Webhooks[1].Cursor != 0 || doc.Webhooks[1].LagEvents == 0 || doc.Webhooks[0].Failing {
		t.Fatalf("health: %s", body)
	}
	_, metrics = get(t, env.c, "/metrics", nil)
	if !strings.Contains(string(metrics), `artifactstore_webhook_failing{subscription="dead"} 1`) {
		t.Errorf("metrics do not show the dead subscription failing")
	}
}

// publishForm publishes one small package in one request (usable from any
// goroutine).
func publishForm(env *testEnv, name, version string) error {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormField("manifest")
	fmt.Fprintf(fw, `{"name":%q,"version":%q,"producer":"ci","retention_class":"release"}`, name, version)
	part, _ := mw.CreateFormFile("file", "f.bin")
	fmt.Fprintf(part, "%s@%s %s", name, version, strings.Repeat("z", 100))
	mw.Close()
	resp, err := env.post("/v1/packages", mw.FormDataContentType(), &buf)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("publish %s@%s: %s", name, version, resp.Status)
	}
	return nil
}

func publishMany(t *testing.T, env *testEnv, from, to int) {
	t.Helper()
	var next atomic.Int64
	next.Store(int64(from))
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for p := 0; p < 8; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(to) {
					return
				}
				if err := publishForm(env, "bulk", fmt.Sprint(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestWebhookReceiverDownAcrossRestarts: a receiver that is down while
// 1,000 packages are published and the service restarts twice gets all
// 1,000 once it is back, in order, from the saved positions.
func TestWebhookReceiverDownAcrossRestarts(t *testing.T) {
	// Reserve a port for the receiver, then leave it closed: connection refused.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	cfgText := hookConfig(t, fmt.Sprintf(`    deploy:
      url: http://%s/hook
      types: ["v1.package.created"]
      secret: "@SECRET@"
`, addr))
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgFile, []byte(strings.ReplaceAll(cfgText, "@DIR@", dir)), 0o600)
	const total = 1000
	start := time.Now()
	defer func() { t.Logf("took %s", time.Since(start)) }()
	env := startServiceFile(t, cfgFile, nil)
	publishMany(t, env, 0, 350)
	env.stop()
	env = startServiceFile(t, cfgFile, nil)
	publishMany(t, env, 350, 700)
	// Down long enough to be reported as failing, keeping its place.
	waitUntil(t, 10*time.Second, "the subscription to be failing", func() bool {
		sts, err := env.svc.Webhooks.Statuses(context.Background())
		return err == nil && len(sts) == 1 && sts[0].Failing && sts[0].LagEvents >= 2*700-1
	})
	env.stop()
	env = startServiceFile(t, cfgFile, nil)
	publishMany(t, env, 700, total)

	t.Logf("published %d packages over two restarts in %s", total, time.Since(start))
	rcv := &hookReceiver{}
	var rln net.Listener
	waitUntil(t, 5*time.Second, "the receiver port", func() bool {
		var err error
		rln, err = net.Listen("tcp", addr)
		return err == nil
	})
	srv := &http.Server{Handler: rcv}
	go srv.Serve(rln)
	defer srv.Close()
	waitUntil(t, 60*time.Second, "1,000 deliveries", func() bool { return rcv.count(t) >= total })
	t.Logf("all delivered after %s", time.Since(start))
	got := rcv.unique(t)
	seen := map[string]bool{}
	for _, e := range got {
		seen[e.Subject] = true
	}
	for i := 0; i < total; i++ {
		if !seen[fmt.Sprintf("bulk@%d", i)] {
			t.Fatalf("bulk@%d was never delivered", i)
		}
	}
	if len(got) != total || len(rcv.problems) > 0 {
		t.Fatalf("%d distinct deliveries, want %d; problems %v", len(got), total, rcv.problems)
	}
	waitUntil(t, 5*time.Second, "recovery", func() bool {
		sts, err := env.svc.Webhooks.Statuses(context.Background())
		return err == nil && !sts[0].Failing && sts[0].LagEvents == 0
	})
}

// TestWebhookCommands: `webhook add|ls|test|rm` against a running
// service (admin socket); a subscription added while it runs gets events
// at once; bad input and config-defined subscriptions get clear errors.
func TestWebhookCommands(t *testing.T) {
	rcv := &hookReceiver{}
	srv := &http.Server{Handler: rcv}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgFile, []byte(strings.ReplaceAll(hookConfig(t, `    fromcfg:
      url: http://127.0.0.1:9/never
      secret: "@SECRET@"
`), "@DIR@", dir)), 0o600)
	secretFile := filepath.Join(dir, "live.secret")
	os.WriteFile(secretFile, []byte(hookSecret), 0o600)
	env := startServiceFile(t, cfgFile, nil)
	url := "http://" + ln.Addr().String() + "/hook"

	code, out, errOut := runCLI(t, "webhook", "add", "--config", cfgFile, "--url", url, "--type", "v1.package.*", "--secret-file", secretFile, "live")
	if code != 0 || !strings.Contains(out, "webhook live added") || strings.Contains(out, "secret") {
		t.Fatalf("add: exit %d: %s %s", code, out, errOut)
	}
	publishSmall(t, env.c, "cli-hooked", "1", "ci")
	waitUntil(t, 10*time.Second, "the delivery to the added subscription", func() bool { return rcv.count(t) == 1 })
	if e := rcv.unique(t)[0]; e.Subject != "cli-hooked@1" {
		t.Fatalf("delivered %s", e.Subject)
	}
	code, out, _ = runCLI(t, "webhook", "add", "--config", cfgFile, "--url", url, "gen")
	if code != 0 || !strings.Contains(out, "secret (shown only now): ") {
		t.Fatalf("add with a generated secret: exit %d: %s", code, out)
	}
	code, out, _ = runCLI(t, "webhook", "ls", "--config", cfgFile, "--json")
	var sts []webhook.Status
	if code != 0 || json.Unmarshal([]byte(out), &sts) != nil || len(sts) != 3 || sts[0].ID != "fromcfg" || !sts[0].FromConfig || sts[2].ID != "live" {
		t.Fatalf("ls: exit %d: %s", code, out)
	}
	if strings.Contains(out, hookSecret) {
		t.Fatal("ls shows a secret")
	}
	if code, out, _ = runCLI(t, "webhook", "ls", "--config", cfgFile); code != 0 || !strings.Contains(out, "live") || !strings.Contains(out, "v1.package.*") {
		t.Fatalf("ls: exit %d: %s", code, out)
	}
	if code, out, errOut = runCLI(t, "webhook", "test", "--config", cfgFile, "live"); code != 0 || !strings.Contains(out, "accepted") {
		t.Fatalf("test: exit %d: %s %s", code, out, errOut)
	}
	if got := rcv.unique(t); len(got) != 2 || got[1].Type != webhook.TestEventType {
		t.Fatalf("after test: %+v", got)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"add", "--url", "ftp://example.com/x", "bad"}, "url"},
		{[]string{"add", "--url", url, "live"}, "exists"},
		{[]string{"add", "--url", url, "Bad Id"}, "id"},
		{[]string{"rm", "fromcfg"}, "config file"},
		{[]string{"rm", "nosuch"}, "not found"},
		{[]string{"test", "fromcfg"}, "test delivery failed"},
	} {
		args := append([]string{"webhook", c.args[0], "--config", cfgFile}, c.args[1:]...)
		code, _, errOut := runCLI(t, args...)
		if code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("webhook %v: exit %d, stderr %q; want 1 and %q", c.args, code, errOut, c.want)
		}
	}
	if code, _, errOut = runCLI(t, "webhook", "rm", "--config", cfgFile, "live"); code != 0 {
		t.Fatalf("rm: %s", errOut)
	}
	publishSmall(t, env.c, "cli-hooked", "2", "ci")
	code, out, _ = runCLI(t, "webhook", "ls", "--config", cfgFile, "--json")
	if json.Unmarshal([]byte(out), &sts) != nil || len(sts) != 2 {
		t.Fatalf("ls after rm: %s", out)
	}
	time.Sleep(200 * time.Millisecond)
	if n := rcv.count(t); n != 2 {
		t.Fatalf("a removed subscription still got events: %d deliveries", n)
	}
}
