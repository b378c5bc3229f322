package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Event is a CloudEvents 1.0 style envelope with a registry-wide,
// gap-free, monotonic sequence number.
type Event struct {
	Seq             uint64          `json:"seq"`
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Source          string          `json:"source"`
	Time            time.Time       `json:"time"`
	Subject         string          `json:"subject"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// appendEvent writes an event in tx, so it commits or rolls back together
// with the change it describes.
func (s *Store) appendEvent(tx *bolt.Tx, typ, subject string, data any) error {
	b := tx.Bucket(bucketEvents)
	b.FillPercent = appendFillPercent
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("event %s: %w", typ, err)
	}
	v, err := encodeEvent(Event{Seq: seq, SpecVersion: eventSpecVersion, ID: newID(), Type: typ, Source: s.source,
		Time: s.now().UTC(), Subject: subject, DataContentType: eventContentType, Data: raw})
	if err != nil {
		return err
	}
	tx.OnCommit(s.events.signal)
	return b.Put(u64(seq), v)
}

// eventSignal is a broadcast without polling: wait returns a channel that
// signal closes (and replaces) once events committed after the call.
type eventSignal struct {
	mu sync.Mutex
	ch chan struct{}
}

func (e *eventSignal) wait() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ch == nil {
		e.ch = make(chan struct{})
	}
	return e.ch
}

func (e *eventSignal) signal() {
	e.mu.Lock()
	if e.ch != nil {
		close(e.ch)
		e.ch = nil
	}
	e.mu.Unlock()
}

// EventNotify returns a channel that is closed as soon as a transaction
// that appended events commits after this call. Take the channel before
// reading with Events, so an event committed in between is not missed.
func (s *Store) EventNotify() <-chan struct{} { return s.events.wait() }

// LastEventSeq returns the sequence of the newest event ever appended (0
// when there was none), whether or not it has been pruned since.
func (s *Store) LastEventSeq(ctx context.Context) (uint64, error) {
	var seq uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		seq = tx.Bucket(bucketEvents).Sequence()
		return nil
	})
	return seq, err
}

// Events returns up to limit events with seq > after, in order. If event
// retention removed events after `after`, it fails with ErrEventsPruned
// naming the oldest available sequence.
func (s *Store) Events(ctx context.Context, after uint64, limit int) ([]Event, error) {
	var out []Event
	if after == ^uint64(0) {
		return nil, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if h := eventHorizon(tx); after+1 < h {
			return fmt.Errorf("%w: events after seq %d up to %d were removed by event retention; the oldest available is seq %d (resume with after=%d)",
				ErrEventsPruned, after, h-1, h, h-1)
		}
		c := tx.Bucket(bucketEvents).Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			if len(k) != 8 {
				continue
			}
			e, err := decodeEventKV(k, v, s.source)
			if err != nil {
				return fmt.Errorf("event %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
