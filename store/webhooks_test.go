package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestSubscriptionRecords(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	commitOne(t, s, "a", "1")
	last, _ := s.LastEventSeq(ctx)
	if last == 0 {
		t.Fatal("no events after a commit")
	}
	// A new config subscription starts at the newest event.
	if _, err := s.SyncConfigSubscriptions(ctx, []Subscription{{ID: "cfg", URL: "http://a/", Secret: "s1"}}); err != nil {
		t.Fatal(err)
	}
	sub, _ := s.GetSubscription(ctx, "cfg")
	if sub.Cursor != last || !sub.FromConfig {
		t.Fatalf("new config subscription: %+v, want cursor %d", sub, last)
	}
	// The cursor never goes back.
	s.UpdateSubscription(ctx, "cfg", func(x *Subscription) { x.Cursor = last - 1; x.LastError = "boom" })
	if sub, _ = s.GetSubscription(ctx, "cfg"); sub.Cursor != last || sub.LastError != "boom" {
		t.Fatalf("after an update with a lower cursor: %+v", sub)
	}
	// A changed config entry keeps its position and state.
	commitOne(t, s, "a", "2")
	if _, err := s.SyncConfigSubscriptions(ctx, []Subscription{{ID: "cfg", URL: "http://b/", Secret: "s2"}}); err != nil {
		t.Fatal(err)
	}
	if sub, _ = s.GetSubscription(ctx, "cfg"); sub.Cursor != last || sub.URL != "http://b/" || sub.Secret != "s2" || sub.LastError != "boom" {
		t.Fatalf("after a config change: %+v", sub)
	}
	// API subscriptions: fromNow, or an explicit start; ids are unique.
	now, _ := s.LastEventSeq(ctx)
	api, err := s.CreateSubscription(ctx, Subscription{ID: "api", URL: "http://c/"}, true)
	if err != nil || api.Cursor != now || api.CreatedAt.IsZero() {
		t.Fatalf("create: %v %+v", err, api)
	}
	if _, err := s.CreateSubscription(ctx, Subscription{ID: "api"}, false); !errors.Is(err, ErrConflict) {
		t.Fatalf("duplicate id: %v", err)
	}
	// A config entry may not take an API subscription's id; a config
	// entry that is gone is removed, API ones stay.
	if _, err := s.SyncConfigSubscriptions(ctx, []Subscription{{ID: "api", URL: "http://d/"}}); !errors.Is(err, ErrConflict) {
		t.Fatalf("config over an API subscription: %v", err)
	}
	removed, err := s.SyncConfigSubscriptions(ctx, nil)
	if err != nil || len(removed) != 1 || removed[0] != "cfg" {
		t.Fatalf("removed %v, %v", removed, err)
	}
	subs, _ := s.Subscriptions(ctx)
	if len(subs) != 1 || subs[0].ID != "api" {
		t.Fatalf("left: %+v", subs)
	}
	if err := s.DeleteSubscription(ctx, "api"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSubscription(ctx, "api"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.UpdateSubscription(ctx, "api", func(*Subscription) {}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a deleted one: %v", err)
	}
}

// TestEventNotifyWakesOnCommit: the channel closes when a commit appends
// events, and not before.
func TestEventNotifyWakesOnCommit(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ch := s.EventNotify()
	select {
	case <-ch:
		t.Fatal("closed before any commit")
	default:
	}
	commitOne(t, s, "a", "1")
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("not woken by a commit")
	}
	if next := s.EventNotify(); next == ch {
		t.Fatal("the next wait reuses the closed channel")
	}
}
