// Package webhook delivers registry events to HTTP receivers: one
// goroutine per subscription reads the durable event log from the
// subscription's cursor and POSTs each matching event (CloudEvents HTTP
// binding, structured mode, HMAC-SHA256 signed), retrying with capped,
// jittered exponential backoff until the receiver answers 2xx. Only then
// does the cursor move, and it is kept in the database, so delivery is at
// least once, in order, across restarts. Publishing never waits for a
// receiver: a commit only wakes the goroutines.
package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"artifactstore/store"
)

// Store is what delivery needs from the registry database; *store.Store
// implements it.
type Store interface {
	// Events returns up to limit events with seq > after, in order.
	Events(ctx context.Context, after uint64, limit int) ([]store.Event, error)
	// EventNotify returns a channel closed once events commit after the call.
	EventNotify() <-chan struct{}
	// LastEventSeq is the sequence of the newest event ever appended.
	LastEventSeq(ctx context.Context) (uint64, error)
	CreateSubscription(ctx context.Context, sub store.Subscription, fromNow bool) (*store.Subscription, error)
	SyncConfigSubscriptions(ctx context.Context, want []store.Subscription) ([]string, error)
	Subscriptions(ctx context.Context) ([]store.Subscription, error)
	GetSubscription(ctx context.Context, id string) (*store.Subscription, error)
	DeleteSubscription(ctx context.Context, id string) error
	// UpdateSubscription rewrites one record; its cursor never goes back.
	UpdateSubscription(ctx context.Context, id string, fn func(*store.Subscription)) error
}

// Options configures a Manager.
type Options struct {
	Config   Config
	Resolver Resolver
	Logger   *slog.Logger
	// Metrics receives the per-subscription metrics; nil registers nowhere.
	Metrics prometheus.Registerer
	// Source is the CloudEvents source of test events; "" means /artifactstore.
	Source string
	// SaveEvery bounds how long a delivered position may stay unsaved
	// (a crash then redelivers at most that much); 0 means 1s. Failures,
	// recoveries and being caught up are saved at once.
	SaveEvery time.Duration
	// Now overrides the clock (tests).
	Now func() time.Time
}

// Manager owns the subscriptions and their delivery goroutines. Safe for
// concurrent use.
type Manager struct {
	st      Store
	cfg     Config
	opts    Options
	log     *slog.Logger
	client  *http.Client
	metrics *metrics
	now     func() time.Time

	mu      sync.Mutex
	runCtx  context.Context // set by Run; nil before
	workers map[string]*worker
	wg      sync.WaitGroup
}

// New builds a manager; deliveries start with Run.
func New(st Store, opts Options) (*Manager, error) {
	if err := opts.Config.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Source == "" {
		opts.Source = "/artifactstore"
	}
	if opts.SaveEvery <= 0 {
		opts.SaveEvery = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 4
	m := &Manager{st: st, cfg: opts.Config, opts: opts, log: opts.Logger, now: opts.Now, workers: map[string]*worker{},
		client: &http.Client{Transport: t, Timeout: opts.Config.Timeout,
			// A redirect is an answer, not a delivery: the receiver must
			// answer 2xx itself.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	m.metrics = newMetrics(m, opts.Metrics)
	return m, nil
}

// Sync creates, updates and removes the config-defined subscriptions so the
// database matches the config. The service calls it once at start.
func (m *Manager) Sync(ctx context.Context) error {
	want, err := m.cfg.subscriptions(m.opts.Resolver)
	if err != nil {
		return err
	}
	removed, err := m.st.SyncConfigSubscriptions(ctx, want)
	if err != nil {
		return fmt.Errorf("webhook subscriptions from the config: %w", err)
	}
	for _, id := range removed {
		m.log.Warn("webhook subscription removed: no longer in the config", "subscription", id)
	}
	return nil
}

// Run delivers until ctx is done, one goroutine per subscription, and
// returns after every goroutine has saved its position.
func (m *Manager) Run(ctx context.Context) {
	var subs []store.Subscription
	for {
		var err error
		if subs, err = m.st.Subscriptions(ctx); err == nil {
			break
		}
		m.log.Error("webhook: listing subscriptions failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.cfg.MaxBackoff):
		}
	}
	m.mu.Lock()
	m.runCtx = ctx
	for _, sub := range subs {
		m.startLocked(sub)
	}
	m.mu.Unlock()
	<-ctx.Done()
	m.wg.Wait()
}

func (m *Manager) startLocked(sub store.Subscription) {
	ctx, cancel := context.WithCancel(m.runCtx)
	w := &worker{m: m, sub: sub, cancel: cancel, done: make(chan struct{}), cursor: sub.Cursor, saved: sub.Cursor,
		deliveredAt: sub.DeliveredAt, retryingSince: sub.RetryingSince, lastError: sub.LastError, savedAt: m.now()}
	m.workers[sub.ID] = w
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		w.run(ctx)
	}()
}

// Add validates and stores a new subscription and, when Run is going,
// starts delivering to it. With fromNow it gets only events committed
// after it; otherwise from sub.Cursor on. An empty secret is generated
// and set in the result (it is shown once).
func (m *Manager) Add(ctx context.Context, sub store.Subscription, fromNow bool) (*store.Subscription, error) {
	if err := Validate(&sub); err != nil {
		return nil, err
	}
	if sub.Secret == "" {
		var b [32]byte
		rand.Read(b[:])
		sub.Secret = hex.EncodeToString(b[:])
	} else if len(sub.Secret) < minSecret {
		return nil, &FieldError{"secret", fmt.Sprintf("must be at least %d bytes", minSecret)}
	}
	sub.FromConfig = false
	sub.RetryingSince, sub.DeliveredAt, sub.LastError, sub.Lost = nil, nil, "", nil
	m.mu.Lock()
	defer m.mu.Unlock()
	created, err := m.st.CreateSubscription(ctx, sub, fromNow)
	if err != nil {
		return nil, err
	}
	m.log.Info("webhook subscription added", "subscription", created.ID, "url", created.URL, "types", created.Types, "cursor", created.Cursor)
	if m.runCtx != nil && m.runCtx.Err() == nil {
		m.startLocked(*created)
	}
	return created, nil
}

// ErrFromConfig refuses to remove a subscription the config defines.
var ErrFromConfig = errors.New("the subscription is defined in the config file; remove it there and restart")

// Remove stops delivering to a subscription and deletes it (and its
// position); store.ErrNotFound if there is none.
func (m *Manager) Remove(ctx context.Context, id string) error {
	sub, err := m.st.GetSubscription(ctx, id)
	if err != nil {
		return err
	}
	if sub.FromConfig {
		return fmt.Errorf("webhook subscription %q: %w", id, ErrFromConfig)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if w := m.workers[id]; w != nil {
		w.cancel()
		<-w.done
		delete(m.workers, id)
	}
	if err := m.st.DeleteSubscription(ctx, id); err != nil {
		return err
	}
	m.metrics.forget(id)
	m.log.Info("webhook subscription removed", "subscription", id)
	return nil
}

// send makes one delivery attempt of body to sub.
func (m *Manager) send(ctx context.Context, sub *store.Subscription, body []byte, attempt int) error {
	ts := m.now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sub.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	h := req.Header
	h.Set("Content-Type", ContentType)
	h.Set("User-Agent", "artifactstore-webhook")
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, Sign([]byte(sub.Secret), ts, body))
	h.Set(HeaderSubscription, sub.ID)
	h.Set(HeaderAttempt, strconv.Itoa(attempt))
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: answered %s", sub.URL, resp.Status)
	}
	return nil
}

// backoff is the wait after the attempt-th failure: InitialBackoff doubled
// per failure, capped at MaxBackoff, drawn between half and all of it.
func (m *Manager) backoff(attempt int) time.Duration {
	d := m.cfg.InitialBackoff
	for i := 1; i < attempt && d < m.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, m.cfg.MaxBackoff)
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// TestResult is the outcome of Test.
type TestResult struct {
	OK         bool   `json:"ok"`
	Error      string `json:"error,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// TestEventType is the type of the event Test sends; it is never in the log.
const TestEventType = "v1.webhook.test"

// Test sends one signed v1.webhook.test event (seq 0, not in the log, no
// retries) to the subscription and reports how the receiver answered.
func (m *Manager) Test(ctx context.Context, id string) (*TestResult, error) {
	sub, err := m.st.GetSubscription(ctx, id)
	if err != nil {
		return nil, err
	}
	var b [16]byte
	rand.Read(b[:])
	data, _ := json.Marshal(map[string]string{"subscription": id})
	body, err := json.Marshal(store.Event{SpecVersion: "1.0", ID: hex.EncodeToString(b[:]), Type: TestEventType, Source: m.opts.Source,
		Time: m.now().UTC(), Subject: id, DataContentType: "application/json", Data: data})
	if err != nil {
		return nil, err
	}
	start := time.Now()
	err = m.send(ctx, sub, body, 1)
	res := &TestResult{OK: err == nil, DurationMS: time.Since(start).Milliseconds()}
	if err != nil {
		res.Error = err.Error()
	}
	return res, nil
}
