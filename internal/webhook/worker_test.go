package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"testing"
	"time"

	"artifactstore/store"
)

// memStore is an in-memory event log and subscription table with event
// pruning, for the worker's own tests (the service tests use bbolt).
type memStore struct {
	mu      sync.Mutex
	events  []store.Event // seq i+1 at index i; pruned ones are zero
	horizon uint64        // oldest available sequence
	subs    map[string]store.Subscription
	wake    chan struct{}
}

var errPruned = fmt.Errorf("events pruned")

func newMemStore() *memStore {
	return &memStore{horizon: 1, subs: map[string]store.Subscription{}, wake: make(chan struct{})}
}

func (m *memStore) append(typ string, t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	seq := uint64(len(m.events) + 1)
	m.events = append(m.events, store.Event{Seq: seq, SpecVersion: "1.0", ID: fmt.Sprint("id-", seq), Type: typ, Source: "/t", Time: t, Data: json.RawMessage(`{}`)})
	close(m.wake)
	m.wake = make(chan struct{})
}

func (m *memStore) prune(upTo uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.horizon = upTo + 1
}

func (m *memStore) Events(ctx context.Context, after uint64, limit int) ([]store.Event, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if after+1 < m.horizon {
		return nil, errPruned
	}
	var out []store.Event
	for i := after; i < uint64(len(m.events)) && len(out) < limit; i++ {
		out = append(out, m.events[i])
	}
	return out, nil
}

func (m *memStore) EventNotify() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.wake
}

func (m *memStore) EventHorizon(ctx context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.horizon, nil
}

func (m *memStore) LastEventSeq(ctx context.Context) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return uint64(len(m.events)), nil
}

func (m *memStore) CreateSubscription(ctx context.Context, sub store.Subscription, fromNow bool) (*store.Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.subs[sub.ID]; ok {
		return nil, store.ErrConflict
	}
	if fromNow {
		sub.Cursor = uint64(len(m.events))
	}
	m.subs[sub.ID] = sub
	return &sub, nil
}

func (m *memStore) SyncConfigSubscriptions(ctx context.Context, want []store.Subscription) ([]string, error) {
	return nil, nil
}

func (m *memStore) Subscriptions(ctx context.Context) ([]store.Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []store.Subscription
	for _, s := range m.subs {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *memStore) GetSubscription(ctx context.Context, id string) (*store.Subscription, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.subs[id]
	if !ok {
		return nil, store.ErrNotFound
	}
	return &s, nil
}

func (m *memStore) DeleteSubscription(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.subs, id)
	return nil
}

func (m *memStore) UpdateSubscription(ctx context.Context, id string, fn func(*store.Subscription)) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.subs[id]
	if !ok {
		return store.ErrNotFound
	}
	c := s.Cursor
	fn(&s)
	s.Cursor = max(s.Cursor, c)
	m.subs[id] = s
	return nil
}

type recorder struct {
	mu   sync.Mutex
	seqs []uint64
	up   bool
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.up {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	var e store.Event
	json.Unmarshal(body, &e)
	r.seqs = append(r.seqs, e.Seq)
}

func (r *recorder) got() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs...)
}

func testManager(t *testing.T, st Store, maxHold time.Duration) (*Manager, context.CancelFunc) {
	m, err := New(st, Options{Config: Config{Timeout: time.Second, InitialBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		FailingAfter: time.Hour, MaxHold: maxHold}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return m, cancel
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (deliveries so far: see below)", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestKeepFromAndLostEvents: a lagging subscription holds pruning back
// (KeepFrom) unless its oldest undelivered event is older than max_hold;
// events pruned before it read them are then recorded as lost, and
// delivery continues with the oldest event left.
func TestKeepFromAndLostEvents(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	rcv := &recorder{up: true}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	for i := 0; i < 5; i++ {
		st.append("v1.package.created", time.Now().Add(-time.Hour))
	}
	st.CreateSubscription(ctx, store.Subscription{ID: "a", URL: srv.URL, Secret: "0123456789abcdef"}, false) // needs 1 on
	st.CreateSubscription(ctx, store.Subscription{ID: "b", URL: srv.URL, Secret: "0123456789abcdef"}, true)  // needs 6 on
	for _, c := range []struct {
		maxHold time.Duration
		want    uint64
	}{{0, 1}, {2 * time.Hour, 1}, {10 * time.Minute, 6}} {
		m, err := New(st, Options{Config: Config{Timeout: time.Second, InitialBackoff: time.Millisecond, MaxBackoff: time.Millisecond, FailingAfter: time.Hour, MaxHold: c.maxHold}})
		if err != nil {
			t.Fatal(err)
		}
		if keep, err := m.KeepFrom(ctx); err != nil || keep != c.want {
			t.Fatalf("max_hold %s: KeepFrom = %d, %v; want %d", c.maxHold, keep, err, c.want)
		}
	}
	st.prune(3) // what a pruner with KeepFrom 6 and a 10m max_hold may do
	m, _ := testManager(t, st, 10*time.Minute)
	eventually(t, "a to catch up", func() bool { return fmt.Sprint(rcv.got()) == "[4 5]" })
	st.append("v1.package.created", time.Now())
	eventually(t, "event 6 to both", func() bool { return len(rcv.got()) == 4 })
	sub, _ := st.GetSubscription(ctx, "a")
	if len(sub.Lost) != 1 || sub.Lost[0].From != 1 || sub.Lost[0].To != 3 {
		t.Fatalf("lost = %+v, want 1..3", sub.Lost)
	}
	eventually(t, "both cursors at 6", func() bool {
		sts, _ := m.Statuses(ctx)
		return sts[0].Cursor == 6 && sts[1].Cursor == 6
	})
	sts, _ := m.Statuses(ctx)
	if sts[0].LostEvents != 3 || sts[1].LostEvents != 0 || sts[0].LagEvents != 0 {
		t.Fatalf("statuses: %+v", sts)
	}
	if keep, _ := m.KeepFrom(ctx); keep != 7 {
		t.Fatalf("KeepFrom when caught up = %d, want 7", keep)
	}
}
