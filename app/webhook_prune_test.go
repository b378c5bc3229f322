package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEventPruningKeepsWhatWebhooksNeed: event pruning never removes an
// event a subscription still needs; with webhooks.max_hold, a subscription
// stuck longer than that stops holding pruning back, and the events pruned
// before it read them are recorded as lost (status, metric), not skipped
// silently.
func TestEventPruningKeepsWhatWebhooksNeed(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	write := func(maxHold string) {
		text := strings.Replace(hookConfig(t, fmt.Sprintf(`    late:
      url: http://%s/hook
      types: ["v1.package.created"]
      secret: "@SECRET@"
`, addr)), "webhooks:\n", "events:\n  max_age: 1ms\n  verification_max_age: 1ms\n  summary_max_age: 1ms\n  prune_interval: 0s\nwebhooks:\n  max_hold: "+maxHold+"\n", 1)
		os.WriteFile(cfgFile, []byte(strings.ReplaceAll(text, "@DIR@", dir)), 0o600)
	}
	ctx := context.Background()
	write("0s")
	env := startServiceFile(t, cfgFile, nil)
	for i := 0; i < 5; i++ {
		publishSmall(t, env.c, "held", fmt.Sprint(i), "ci")
	}
	time.Sleep(5 * time.Millisecond)
	rep, err := env.svc.Lifecycle.PruneEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Event 1 (a location event the subscription skips) may go; from the
	// first package event (seq 2, undelivered) on everything stays.
	if rep.Floor != 2 || rep.Deleted > 1 {
		t.Fatalf("pruning with a stuck subscription: floor %d, deleted %d; want floor 2", rep.Floor, rep.Deleted)
	}
	if evs, err := env.svc.Store.Events(ctx, 1, 100); err != nil || len(evs) < 9 || evs[0].Seq != 2 {
		t.Fatalf("events after pruning: %d, %v", len(evs), err)
	}
	env.stop()

	// Restart with max_hold 1ms: the subscription (stuck on event 1, with
	// 1..10 read) no longer holds pruning back.
	write("1ms")
	env = startServiceFile(t, cfgFile, nil)
	waitUntil(t, 10*time.Second, "a failed attempt", func() bool {
		sts, _ := env.svc.Webhooks.Statuses(ctx)
		return sts[0].RetryingSince != nil
	})
	readBefore, _ := env.svc.Store.LastEventSeq(ctx)
	for i := 5; i < 10; i++ {
		publishSmall(t, env.c, "held", fmt.Sprint(i), "ci")
	}
	time.Sleep(5 * time.Millisecond)
	if rep, err = env.svc.Lifecycle.PruneEvents(ctx); err != nil || rep.Deleted == 0 {
		t.Fatalf("pruning past max_hold deleted %d, %v", rep.Deleted, err)
	}
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
	waitUntil(t, 10*time.Second, "the lost events to be recorded", func() bool {
		sts, _ := env.svc.Webhooks.Statuses(ctx)
		return sts[0].LostEvents > 0
	})
	// It got what it had read before the pruning (held@0..4), lost the
	// later ones, and says so.
	if n := rcv.count(t); n != 5 {
		t.Fatalf("delivered %d events, want the 5 read before pruning", n)
	}
	sts, _ := env.svc.Webhooks.Statuses(ctx)
	if len(sts[0].Lost) != 1 || sts[0].Lost[0].From != readBefore+1 {
		t.Fatalf("lost ranges %+v, want one from seq %d", sts[0].Lost, readBefore+1)
	}
	_, metrics := get(t, env.c, "/metrics", nil)
	if !strings.Contains(string(metrics), fmt.Sprintf(`artifactstore_webhook_lost_events{subscription="late"} %d`, sts[0].LostEvents)) {
		t.Fatal("the lost events metric is missing")
	}
}
