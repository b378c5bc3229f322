package webhook

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"artifactstore/store"
)

// Status is a subscription as the admin API and /v1/health show it (never
// with its secret).
type Status struct {
	ID             string    `json:"id"`
	URL            string    `json:"url"`
	Types          []string  `json:"types"`
	Producer       string    `json:"producer,omitempty"`
	RetentionClass string    `json:"retention_class,omitempty"`
	FromConfig     bool      `json:"from_config"`
	CreatedAt      time.Time `json:"created_at"`
	// Cursor: every event up to this sequence is delivered or skipped.
	Cursor uint64 `json:"cursor"`
	// LagEvents is how many events the log has after the cursor;
	// LagSeconds the age of the oldest of them (0 when caught up).
	LagEvents     uint64     `json:"lag_events"`
	LagSeconds    float64    `json:"lag_seconds"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
	RetryingSince *time.Time `json:"retrying_since,omitempty"`
	// Failing: deliveries have failed for longer than failing_after.
	Failing    bool               `json:"failing"`
	LastError  string             `json:"last_error,omitempty"`
	LostEvents uint64             `json:"lost_events"`
	Lost       []store.LostEvents `json:"lost,omitempty"`
}

// Statuses reports every subscription, with the live position of the
// running ones.
func (m *Manager) Statuses(ctx context.Context) ([]Status, error) {
	subs, err := m.st.Subscriptions(ctx)
	if err != nil {
		return nil, err
	}
	last, err := m.st.LastEventSeq(ctx)
	if err != nil {
		return nil, err
	}
	now := m.now()
	out := make([]Status, 0, len(subs))
	for _, sub := range subs {
		st := Status{ID: sub.ID, URL: sub.URL, Types: sub.Types, Producer: sub.Producer, RetentionClass: sub.RetentionClass,
			FromConfig: sub.FromConfig, CreatedAt: sub.CreatedAt, Cursor: sub.Cursor, DeliveredAt: sub.DeliveredAt,
			RetryingSince: sub.RetryingSince, LastError: sub.LastError, Lost: sub.Lost}
		if st.Types == nil {
			st.Types = []string{}
		}
		m.mu.Lock()
		w := m.workers[sub.ID]
		m.mu.Unlock()
		if w != nil {
			w.mu.Lock()
			st.Cursor = max(st.Cursor, w.cursor)
			st.DeliveredAt, st.RetryingSince, st.LastError = w.deliveredAt, w.retryingSince, w.lastError
			w.mu.Unlock()
		}
		for _, l := range sub.Lost {
			st.LostEvents += l.To - l.From + 1
		}
		st.Failing = st.RetryingSince != nil && now.Sub(*st.RetryingSince) >= m.cfg.FailingAfter
		if last > st.Cursor {
			st.LagEvents = last - st.Cursor
			if evs, err := m.st.Events(ctx, st.Cursor, 1); err == nil && len(evs) > 0 {
				st.LagSeconds = max(0, now.Sub(evs[0].Time).Seconds())
			}
		}
		out = append(out, st)
	}
	return out, nil
}

// KeepFrom is the lowest event sequence a subscription still needs, for
// event pruning: pruning must keep every event at or after it. 0 means no
// subscription holds anything back. A subscription whose oldest
// undelivered event is older than max_hold (when set) no longer holds
// pruning back; events pruned before it got them are recorded as lost.
func (m *Manager) KeepFrom(ctx context.Context) (uint64, error) {
	sts, err := m.Statuses(ctx)
	if err != nil {
		return 0, err
	}
	var keep uint64
	for _, st := range sts {
		if m.cfg.MaxHold > 0 && st.LagSeconds > m.cfg.MaxHold.Seconds() {
			continue
		}
		if keep == 0 || st.Cursor+1 < keep {
			keep = st.Cursor + 1
		}
	}
	return keep, nil
}

// metrics are the per-subscription series.
type metrics struct {
	delivered, failed *prometheus.CounterVec
}

func newMetrics(m *Manager, reg prometheus.Registerer) *metrics {
	mt := &metrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "artifactstore_webhook_delivered_total",
			Help: "Events delivered with a 2xx answer, by subscription."}, []string{"subscription"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "artifactstore_webhook_failed_attempts_total",
			Help: "Delivery attempts that failed (error or non-2xx answer), by subscription."}, []string{"subscription"}),
	}
	if reg != nil {
		reg.MustRegister(mt.delivered, mt.failed, &stateCollector{m})
	}
	return mt
}

func (mt *metrics) forget(id string) {
	mt.delivered.DeleteLabelValues(id)
	mt.failed.DeleteLabelValues(id)
}

var (
	descLagEvents = prometheus.NewDesc("artifactstore_webhook_lag_events",
		"Events in the log after the subscription's cursor.", []string{"subscription"}, nil)
	descLagSeconds = prometheus.NewDesc("artifactstore_webhook_lag_seconds",
		"Age of the oldest event after the subscription's cursor (0 when caught up).", []string{"subscription"}, nil)
	descFailing = prometheus.NewDesc("artifactstore_webhook_failing",
		"1 while deliveries have failed for longer than webhooks.failing_after.", []string{"subscription"}, nil)
	descLost = prometheus.NewDesc("artifactstore_webhook_lost_events",
		"Events pruned from the log before the subscription got them.", []string{"subscription"}, nil)
)

// stateCollector reads lag and failing state at scrape time, so a
// subscription stuck on a dead receiver still shows its growing lag.
type stateCollector struct{ m *Manager }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLagEvents
	ch <- descLagSeconds
	ch <- descFailing
	ch <- descLost
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	ctx := c.m.runCtx
	c.m.mu.Unlock()
	if ctx == nil || ctx.Err() != nil {
		return // not delivering (a command-line process, or shut down)
	}
	sts, err := c.m.Statuses(ctx)
	if err != nil {
		return
	}
	for _, st := range sts {
		failing := 0.0
		if st.Failing {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(descLagEvents, prometheus.GaugeValue, float64(st.LagEvents), st.ID)
		ch <- prometheus.MustNewConstMetric(descLagSeconds, prometheus.GaugeValue, st.LagSeconds, st.ID)
		ch <- prometheus.MustNewConstMetric(descFailing, prometheus.GaugeValue, failing, st.ID)
		ch <- prometheus.MustNewConstMetric(descLost, prometheus.GaugeValue, float64(st.LostEvents), st.ID)
	}
}
