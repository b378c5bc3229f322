package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"artifactstore/store"
)

// EventLog is what the event endpoints read.
type EventLog interface {
	// Events returns up to limit events with seq > after, in order.
	Events(ctx context.Context, after uint64, limit int) ([]store.Event, error)
	// EventNotify returns a channel closed once events are committed after
	// the call; callers take it before reading, so nothing slips between.
	EventNotify() <-chan struct{}
}

// streamBatch is how many events one read of the log sends at most.
const streamBatch = 500

// streams tracks the live event streams so a shutdown can end them: an
// open stream would otherwise hold http.Server.Shutdown until its timeout.
type streams struct {
	once sync.Once
	stop chan struct{}
	sem  chan struct{}
}

// StopStreams ends every open event stream (GET /v1/events/stream). The
// service calls it when the HTTP server shuts down; a client resumes from
// its Last-Event-ID against the next process.
func (s *Server) StopStreams() { s.streams.once.Do(func() { close(s.streams.stop) }) }

// streamAfter reads where a stream starts: Last-Event-ID (what a
// reconnecting EventSource sends) wins over the after query parameter.
func streamAfter(r *http.Request) (uint64, error) {
	if v := strings.TrimSpace(r.Header.Get("Last-Event-ID")); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, newErr(http.StatusBadRequest, "invalid_last_event_id", "Last-Event-ID must be an event sequence number (a non-negative integer)")
		}
		return n, nil
	}
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, newErr(http.StatusBadRequest, "invalid_after", "after must be a non-negative integer sequence number")
		}
		return n, nil
	}
	return 0, nil
}

// eventStream serves GET /v1/events/stream as Server-Sent Events: every
// event with seq > after, then each new one as soon as its transaction
// commits. Each event is one message of the stream whose id is the
// sequence and whose data is the event's JSON (one line); a comment line
// keeps idle connections alive.
func (s *Server) eventStream(w http.ResponseWriter, r *http.Request) {
	after, err := streamAfter(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	select {
	case s.streams.sem <- struct{}{}:
		defer func() { <-s.streams.sem }()
	default:
		w.Header().Set("Retry-After", "5")
		s.fail(w, r, newErr(http.StatusServiceUnavailable, "too_many_streams",
			fmt.Sprintf("%d event streams are open; retry later or poll GET /v1/events", cap(s.streams.sem))))
		return
	}
	log := s.opts.Events
	if log == nil {
		log = s.reg.Store()
	}
	// The first read happens before the answer starts, so a start the log
	// cannot serve (pruned events, a database error) is a proper error.
	ctx := r.Context()
	changed := log.EventNotify()
	evs, err := log.Events(ctx, after, streamBatch)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	rc := http.NewResponseController(w)
	// A stream outlives any per-response write deadline the server sets.
	_ = rc.SetWriteDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// retry: tells an EventSource how long to wait before reconnecting.
	if _, err := fmt.Fprint(w, "retry: 1000\n\n"); err != nil || rc.Flush() != nil {
		return
	}
	keepalive := time.NewTicker(s.opts.StreamKeepalive)
	defer keepalive.Stop()
	for first := true; ; first = false {
		if !first {
			changed = log.EventNotify()
			if evs, err = log.Events(ctx, after, streamBatch); err != nil {
				if ctx.Err() == nil {
					loggerFrom(ctx, s.log).Warn("event stream: reading the event log failed", "after", after, "err", err)
				}
				return
			}
		}
		for _, e := range evs {
			b, err := json.Marshal(e)
			if err != nil {
				return
			}
			if _, err := fmt.Fprintf(w, "id: %d\ndata: %s\n\n", e.Seq, b); err != nil {
				return
			}
			after = e.Seq
		}
		if len(evs) > 0 {
			if rc.Flush() != nil {
				return
			}
			if len(evs) == streamBatch {
				continue
			}
		}
		select {
		case <-changed:
		case <-keepalive.C:
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-ctx.Done():
			return
		case <-s.streams.stop:
			return
		}
	}
}
