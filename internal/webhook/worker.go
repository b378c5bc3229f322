package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"artifactstore/store"
)

// readBatch is how many events a worker reads from the log at once.
const readBatch = 256

// worker delivers one subscription's events in order.
type worker struct {
	m      *Manager
	sub    store.Subscription // target and filters; fixed while it runs
	cancel context.CancelFunc
	done   chan struct{}

	mu            sync.Mutex // guards the state below (read by Status)
	cursor        uint64     // delivered (or skipped) up to here
	saved         uint64     // cursor as last written to the database
	savedAt       time.Time
	dirty         bool // state to write besides the cursor
	deliveredAt   *time.Time
	retryingSince *time.Time
	lastError     string
	failingLogged bool
}

func (w *worker) position() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cursor
}

func (w *worker) run(ctx context.Context) {
	defer close(w.done)
	// The last position survives the shutdown that cancelled ctx.
	defer w.save(context.WithoutCancel(ctx))
	log := w.m.log.With("subscription", w.sub.ID)
	readFailures := 0
	for {
		changed := w.m.st.EventNotify()
		evs, err := w.m.st.Events(ctx, w.position(), readBatch)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if w.skipPruned(ctx) {
				continue
			}
			readFailures++
			log.Error("webhook: reading the event log failed; retrying", "after", w.position(), "err", err)
			if !sleep(ctx, w.m.backoff(readFailures)) {
				return
			}
			continue
		}
		readFailures = 0
		if len(evs) == 0 {
			w.save(ctx)
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
			continue
		}
		for i := range evs {
			ev := &evs[i]
			if Matches(&w.sub, ev) && !w.deliver(ctx, ev) {
				return
			}
			w.mu.Lock()
			w.cursor = ev.Seq
			due := w.m.now().Sub(w.savedAt) >= w.m.opts.SaveEvery
			w.mu.Unlock()
			if due {
				w.save(ctx)
			}
		}
	}
}

// deliver sends ev until the receiver answers 2xx; false when ctx ended.
func (w *worker) deliver(ctx context.Context, ev *store.Event) bool {
	body, err := json.Marshal(ev)
	if err != nil {
		return false // an event read from the log always encodes
	}
	log := w.m.log.With("subscription", w.sub.ID, "url", w.sub.URL)
	for attempt := 1; ; attempt++ {
		err := w.m.send(ctx, &w.sub, body, attempt)
		if ctx.Err() != nil {
			return false
		}
		now := w.m.now()
		if err == nil {
			w.m.metrics.delivered.WithLabelValues(w.sub.ID).Inc()
			w.mu.Lock()
			t := now.UTC()
			w.deliveredAt = &t
			recovered, wasFailing := w.retryingSince != nil, w.failingLogged
			w.retryingSince, w.lastError, w.failingLogged = nil, "", false
			w.dirty = true
			w.mu.Unlock()
			if recovered {
				if wasFailing {
					log.Warn("webhook subscription recovered", "seq", ev.Seq, "attempts", attempt)
				}
				w.save(ctx)
			}
			return true
		}
		w.m.metrics.failed.WithLabelValues(w.sub.ID).Inc()
		w.mu.Lock()
		first := w.retryingSince == nil
		if first {
			t := now.UTC()
			w.retryingSince = &t
		}
		w.lastError = err.Error()
		since := *w.retryingSince
		failing := !w.failingLogged && now.Sub(since) >= w.m.cfg.FailingAfter
		if failing {
			w.failingLogged = true
		}
		w.dirty = true
		w.mu.Unlock()
		if first {
			log.Info("webhook delivery failed; retrying with backoff", "seq", ev.Seq, "err", err)
			w.save(ctx)
		}
		if failing {
			log.Warn("webhook subscription failing: deliveries keep retrying from its position", "seq", ev.Seq,
				"retrying_since", since, "failing_after", w.m.cfg.FailingAfter.String(), "err", err)
		}
		if !sleep(ctx, w.m.backoff(attempt)) {
			return false
		}
	}
}

// horizoner is a store that prunes events: EventHorizon is the oldest
// sequence still available.
type horizoner interface {
	EventHorizon(ctx context.Context) (uint64, error)
}

// skipPruned handles a read that failed because event retention removed
// events after the cursor (the subscription did not hold pruning back,
// see Manager.KeepFrom): the missing range is recorded as lost, loudly,
// and delivery goes on from the oldest event still in the log.
func (w *worker) skipPruned(ctx context.Context) bool {
	h, ok := w.m.st.(horizoner)
	if !ok {
		return false
	}
	horizon, err := h.EventHorizon(ctx)
	from := w.position() + 1
	if err != nil || horizon <= from {
		return false
	}
	lost := store.LostEvents{From: from, To: horizon - 1, At: w.m.now().UTC()}
	err = w.m.st.UpdateSubscription(ctx, w.sub.ID, func(s *store.Subscription) {
		s.Cursor = lost.To
		s.Lost = append(s.Lost, lost)
	})
	if err != nil {
		return false
	}
	w.mu.Lock()
	w.cursor, w.saved = max(w.cursor, lost.To), max(w.saved, lost.To)
	w.mu.Unlock()
	w.m.log.Warn("webhook subscription lost events: they were pruned before delivery", "subscription", w.sub.ID,
		"from", lost.From, "to", lost.To, "count", lost.To-lost.From+1)
	return true
}

// save writes the position and delivery state if they changed. A failed
// write is logged; the position is written again later.
func (w *worker) save(ctx context.Context) {
	w.mu.Lock()
	if w.cursor == w.saved && !w.dirty {
		w.mu.Unlock()
		return
	}
	cursor, delivered, retrying, lastErr := w.cursor, w.deliveredAt, w.retryingSince, w.lastError
	w.dirty = false
	w.savedAt = w.m.now()
	w.mu.Unlock()
	err := w.m.st.UpdateSubscription(ctx, w.sub.ID, func(s *store.Subscription) {
		s.Cursor, s.DeliveredAt, s.RetryingSince, s.LastError = cursor, delivered, retrying, lastErr
	})
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) && ctx.Err() == nil {
			w.m.log.Error("webhook: saving the delivery position failed", "subscription", w.sub.ID, "cursor", cursor, "err", err)
		}
		w.mu.Lock()
		w.dirty = true
		w.mu.Unlock()
		return
	}
	w.mu.Lock()
	w.saved = max(w.saved, cursor)
	w.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
