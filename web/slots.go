package web

import (
	"sync"
	"time"
)

// uploadSlots bounds the uploads in flight: staged blob PUTs and
// one-request form publishes alike (server.max_concurrent_uploads).
//
// A slot is meant for a client that moves bytes. When every slot is taken,
// a new upload may take the slot of one whose client has, for at least
// lagGrace of waiting, delivered less than server.min_body_rate: that body
// is cut off (its request ends with 408 body_timeout) and the newcomer
// proceeds. So clients that trickle cannot lock out those that send; at
// worst they hold the slots for lagGrace. The cut-off request still runs
// its clean-up for a moment, so the number of handlers can briefly exceed
// the limit by the number of slots taken over.
type uploadSlots struct {
	mu       sync.Mutex
	max      int
	lagGrace time.Duration
	held     map[*uploadSlot]struct{}
}

type uploadSlot struct{ body *countingBody }

// lagGrace is how long an upload must have lagged below the minimum rate
// before a new upload may take its slot: an eighth of the rate window,
// at least 250ms and at most 1s, so a client that has just started (or
// waits for 100 Continue) keeps its slot.
func lagGrace(window time.Duration) time.Duration {
	return min(max(window/8, 250*time.Millisecond), time.Second)
}

func newUploadSlots(max int, lagGrace time.Duration) *uploadSlots {
	return &uploadSlots{max: max, lagGrace: lagGrace, held: map[*uploadSlot]struct{}{}}
}

// acquire returns a slot for an upload reading body (which may be nil), or
// false if all are taken by uploads that keep up with the minimum rate.
func (u *uploadSlots) acquire(body *countingBody) (*uploadSlot, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := &uploadSlot{body: body}
	if len(u.held) < u.max {
		u.held[s] = struct{}{}
		return s, true
	}
	for h := range u.held {
		if h.body != nil && h.body.cutIfLagging(u.lagGrace) {
			delete(u.held, h)
			u.held[s] = struct{}{}
			return s, true
		}
	}
	return nil, false
}

// release gives the slot back; releasing a slot taken over is a no-op.
func (u *uploadSlots) release(s *uploadSlot) {
	u.mu.Lock()
	delete(u.held, s)
	u.mu.Unlock()
}

// UploadsInFlight returns how many upload slots are held now.
func (s *Server) UploadsInFlight() int { return s.uploads.inUse() }

// inUse returns how many slots are held.
func (u *uploadSlots) inUse() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.held)
}
