package app

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"artifactstore/internal/client"
)

// publishSmall publishes one small package name@version with distinct content.
func publishSmall(t testing.TB, c *client.Client, name, version, producer string) {
	t.Helper()
	files := map[string][]byte{"f.bin": []byte(name + "@" + version + strings.Repeat("x", 64))}
	publish(t, c, manifestOf(name, version, producer, "release", files), files)
}

// sseRead opens GET /v1/events/stream with the given query and headers and
// hands each message (id and data) to fn until fn returns false.
func sseRead(t *testing.T, env *testEnv, query string, hdr http.Header, fn func(id uint64, data string) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.url+"/v1/events/stream"+query, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+env.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	errStop := fmt.Errorf("stop")
	err = client.ReadSSE(resp.Body, func(id, data string) error {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			t.Fatalf("message id %q is not a sequence: %v", id, err)
		}
		if !fn(n, data) {
			return errStop
		}
		return nil
	})
	if err != errStop {
		t.Fatalf("stream ended early: %v", err)
	}
}

// TestEventStreamDeliversWithin100ms: an open stream receives each new
// event within 100 ms of the commit that wrote it (a poller with a 1 s
// interval fails this).
func TestEventStreamDeliversWithin100ms(t *testing.T) {
	env := startService(t, localConfig)
	publishSmall(t, env.c, "warm", "1", "ci")
	start, err := env.svc.Store.LastEventSeq(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	type arrival struct {
		ev client.Event
		at time.Time
	}
	got := make(chan arrival, 100)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	streamErr := make(chan error, 1)
	go func() {
		streamErr <- env.c.StreamEvents(ctx, start, client.StreamOptions{}, func(e client.Event) error {
			got <- arrival{e, time.Now()}
			return nil
		})
	}()
	const trials = 10
	var lags []time.Duration
	for i := 0; i < trials; i++ {
		version := strconv.Itoa(i)
		publishSmall(t, env.c, "live", version, "ci")
		committed := time.Now()
		for {
			select {
			case a := <-got:
				if a.ev.Type != "v1.package.created" {
					continue
				}
				if a.ev.Subject != "live@"+version {
					t.Fatalf("trial %d: got %s, want live@%s", i, a.ev.Subject, version)
				}
				lag := a.at.Sub(committed)
				if lag < 0 {
					lag = 0 // arrived before the commit's HTTP answer
				}
				lags = append(lags, lag)
			case err := <-streamErr:
				t.Fatalf("stream ended: %v", err)
			case <-time.After(5 * time.Second):
				t.Fatalf("trial %d: no event within 5s of the commit", i)
			}
			break
		}
	}
	sort.Slice(lags, func(i, j int) bool { return lags[i] < lags[j] })
	t.Logf("stream lag after the commit answer over %d trials: median %s, max %s", trials, lags[trials/2], lags[trials-1])
	if lags[trials-1] > 100*time.Millisecond {
		t.Fatalf("an event arrived %s after its commit; want within 100ms (sorted lags %v)", lags[trials-1], lags)
	}
}

// TestEventStreamResumesFromLastEventID: a client that drops the stream and
// reconnects with Last-Event-ID gets exactly the events after that id: no
// gap, no duplicate, including events committed while it was away.
func TestEventStreamResumesFromLastEventID(t *testing.T) {
	env := startService(t, localConfig)
	for i := 0; i < 3; i++ {
		publishSmall(t, env.c, "before", strconv.Itoa(i), "ci")
	}
	// Read the first four events, then drop the connection.
	var seen []uint64
	sseRead(t, env, "?after=0", nil, func(id uint64, data string) bool {
		if !strings.Contains(data, fmt.Sprintf(`"seq":%d`, id)) {
			t.Fatalf("message %d carries another event: %s", id, data)
		}
		seen = append(seen, id)
		return len(seen) < 4
	})
	for i := 0; i < 3; i++ {
		publishSmall(t, env.c, "while-away", strconv.Itoa(i), "ci")
	}
	last, _ := env.svc.Store.LastEventSeq(context.Background())
	// Last-Event-ID wins over ?after (it is what a reconnecting browser sends).
	sseRead(t, env, "?after=0", http.Header{"Last-Event-Id": {strconv.FormatUint(seen[len(seen)-1], 10)}}, func(id uint64, data string) bool {
		seen = append(seen, id)
		return id < last
	})
	for i, id := range seen {
		if id != uint64(i+1) {
			t.Fatalf("sequence across the reconnect has a gap or duplicate at %d: %v", i, seen)
		}
	}
	if uint64(len(seen)) != last {
		t.Fatalf("saw %d events, log has %d", len(seen), last)
	}
	// A bad Last-Event-ID is a clear 400, not a stream from 0.
	req, _ := http.NewRequest(http.MethodGet, env.url+"/v1/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+env.token)
	req.Header.Set("Last-Event-ID", "nine")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bad Last-Event-ID: %d, want 400", resp.StatusCode)
	}
}

// TestEventsFollowUsesStream: `artifactstore events --follow` prints the
// backlog and then new events as they commit, and a shutdown of the
// service does not wait for open streams.
func TestEventsFollowUsesStream(t *testing.T) {
	env := startService(t, localConfig)
	publishSmall(t, env.c, "old", "1", "ci")
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"artifactstore", "events", "--follow", "--server", env.url},
			Env{Stdout: &out, Stderr: &bytes.Buffer{}, Environ: []string{"ARTIFACTSTORE_TOKEN=" + env.token}})
	}()
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("events --follow did not print %q; output:\n%s", what, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("v1.package.created\told@1")
	publishSmall(t, env.c, "new", "1", "ci")
	waitFor("v1.package.created\tnew@1")
	if n := strings.Count(out.String(), "v1.package.created"); n != 2 {
		t.Fatalf("printed %d package events, want 2:\n%s", n, out.String())
	}
	// Serve returns promptly although a stream is open (shutdown_timeout
	// is 30s by default).
	stopped := make(chan struct{})
	go func() { env.stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown waited for an open event stream")
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("events --follow exited %d", code)
	}
}
