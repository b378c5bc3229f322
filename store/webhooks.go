package store

import (
	"context"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Subscription is a webhook subscription: where to deliver which events,
// and how far delivery got. internal/webhook validates and delivers; the
// store only keeps the record.
type Subscription struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Types are path.Match globs on the event type ("v1.package.*"); empty
	// means every type.
	Types []string `json:"types,omitempty"`
	// Producer and RetentionClass are globs on the event data's producer
	// and retention_class; empty means any.
	Producer       string `json:"producer,omitempty"`
	RetentionClass string `json:"retention_class,omitempty"`
	// Secret is the HMAC-SHA256 key deliveries are signed with. It has to
	// be kept (not hashed) to sign; it is never listed by the API.
	Secret string `json:"secret"`
	// FromConfig marks a subscription defined in the config file: the
	// service creates, updates and removes it from there at start.
	FromConfig bool      `json:"from_config,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	// Cursor is the delivery position: every event with seq <= Cursor was
	// delivered with a 2xx answer, or did not match. It only moves forward.
	Cursor uint64 `json:"cursor"`
	// DeliveredAt is the time of the last 2xx answer.
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	// RetryingSince is the first failed attempt of the current run of
	// failures (nil after a success). Delivery is "failing" once it is
	// older than the configured failing time.
	RetryingSince *time.Time `json:"retrying_since,omitempty"`
	LastError     string     `json:"last_error,omitempty"`
	// Lost lists events that event retention removed before they were
	// delivered; never cleared.
	Lost []LostEvents `json:"lost,omitempty"`
}

// LostEvents is a range of sequences a subscription never received.
type LostEvents struct {
	From uint64    `json:"from"`
	To   uint64    `json:"to"`
	At   time.Time `json:"at"`
}

// CreateSubscription stores a new subscription; ErrConflict if its id is
// taken. With fromNow, its cursor is the newest event at commit, so only
// later events are delivered; otherwise sub.Cursor is kept.
func (s *Store) CreateSubscription(ctx context.Context, sub Subscription, fromNow bool) (*Subscription, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if b.Get([]byte(sub.ID)) != nil {
			return fmt.Errorf("webhook subscription %q: %w: it exists", sub.ID, ErrConflict)
		}
		if fromNow {
			sub.Cursor = tx.Bucket(bucketEvents).Sequence()
		}
		if sub.CreatedAt.IsZero() {
			sub.CreatedAt = s.now().UTC()
		}
		return putSubscription(b, &sub)
	})
	if err != nil {
		return nil, err
	}
	return &sub, nil
}

func putSubscription(b *bolt.Bucket, sub *Subscription) error {
	v, err := encode(sub)
	if err != nil {
		return err
	}
	return b.Put([]byte(sub.ID), v)
}

// SyncConfigSubscriptions makes the config-defined subscriptions match
// want in one transaction: new ones start at the newest event, changed
// ones keep their cursor and state, and config-defined ones no longer in
// want are removed (their ids are returned). A want whose id belongs to a
// subscription created through the API is ErrConflict.
func (s *Store) SyncConfigSubscriptions(ctx context.Context, want []Subscription) (removed []string, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		removed = nil
		b := tx.Bucket(bucketWebhooks)
		keep := map[string]bool{}
		for _, w := range want {
			keep[w.ID] = true
			w.FromConfig = true
			if v := b.Get([]byte(w.ID)); v != nil {
				var old Subscription
				if err := decode(v, &old); err != nil {
					return fmt.Errorf("webhook subscription %q: %w", w.ID, err)
				}
				if !old.FromConfig {
					return fmt.Errorf("webhook subscription %q: %w: an API-created subscription has this id; remove it or rename the config entry", w.ID, ErrConflict)
				}
				old.URL, old.Types, old.Producer, old.RetentionClass, old.Secret = w.URL, w.Types, w.Producer, w.RetentionClass, w.Secret
				if err := putSubscription(b, &old); err != nil {
					return err
				}
				continue
			}
			w.Cursor = tx.Bucket(bucketEvents).Sequence()
			w.CreatedAt = s.now().UTC()
			if err := putSubscription(b, &w); err != nil {
				return err
			}
		}
		var gone [][]byte
		err := b.ForEach(func(k, v []byte) error {
			var sub Subscription
			if err := decode(v, &sub); err != nil {
				return fmt.Errorf("webhook subscription %q: %w", k, err)
			}
			if sub.FromConfig && !keep[sub.ID] {
				gone = append(gone, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range gone {
			if err := b.Delete(k); err != nil {
				return err
			}
			removed = append(removed, string(k))
		}
		return nil
	})
	return removed, err
}

// Subscriptions lists every subscription by id.
func (s *Store) Subscriptions(ctx context.Context) ([]Subscription, error) {
	var out []Subscription
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketWebhooks).ForEach(func(k, v []byte) error {
			var sub Subscription
			if err := decode(v, &sub); err != nil {
				return fmt.Errorf("webhook subscription %q: %w", k, err)
			}
			out = append(out, sub)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

// GetSubscription returns one subscription; ErrNotFound if absent.
func (s *Store) GetSubscription(ctx context.Context, id string) (*Subscription, error) {
	var sub Subscription
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketWebhooks).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("webhook subscription %q: %w", id, ErrNotFound)
		}
		return decode(v, &sub)
	})
	if err != nil {
		return nil, err
	}
	return &sub, nil
}

// DeleteSubscription removes a subscription; ErrNotFound if absent.
func (s *Store) DeleteSubscription(ctx context.Context, id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		if b.Get([]byte(id)) == nil {
			return fmt.Errorf("webhook subscription %q: %w", id, ErrNotFound)
		}
		return b.Delete([]byte(id))
	})
}

// UpdateSubscription applies fn to the stored subscription and writes it
// back, in one transaction; ErrNotFound if it is gone. The cursor never
// moves backwards: a lower cursor set by fn is ignored. It shares a
// commit with concurrent writes, so fn may run more than once.
func (s *Store) UpdateSubscription(ctx context.Context, id string, fn func(*Subscription)) error {
	return s.batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketWebhooks)
		v := b.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("webhook subscription %q: %w", id, ErrNotFound)
		}
		var sub Subscription
		if err := decode(v, &sub); err != nil {
			return fmt.Errorf("webhook subscription %q: %w", id, err)
		}
		cursor := sub.Cursor
		fn(&sub)
		sub.ID = id
		sub.Cursor = max(sub.Cursor, cursor)
		return putSubscription(b, &sub)
	})
}
