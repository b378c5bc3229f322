package web

import (
	"fmt"
	"net/http"
	"sync"
)

// memBudget is memory shared by every one-request form publish
// (server.form_memory_bytes).
type memBudget struct {
	mu   sync.Mutex
	left int64
}

func (b *memBudget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if n > b.left {
		return false
	}
	b.left -= n
	return true
}

func (b *memBudget) give(n int64) {
	b.mu.Lock()
	b.left += n
	b.mu.Unlock()
}

// formMemory is one form's share: at most left bytes of its own, each also
// taken from the shared budget, all given back by release.
type formMemory struct {
	global *memBudget
	left   int64
	taken  int64
}

// take charges n bytes, or returns the error to answer when either the
// request's or the server's form memory is used up.
func (m *formMemory) take(n int64) error {
	if n > m.left {
		return newErr(http.StatusRequestEntityTooLarge, "form_too_large",
			fmt.Sprintf("the form's file parts need more than %d bytes of server memory for their bookkeeping; publish this many files with /v1/uploads", memSpoolBudget))
	}
	if !m.global.take(n) {
		return newErr(http.StatusServiceUnavailable, "too_many_uploads",
			"one-request publishes hold all of server.form_memory_bytes; retry shortly or use /v1/uploads")
	}
	m.left -= n
	m.taken += n
	return nil
}

func (m *formMemory) release() {
	m.global.give(m.taken)
	m.taken = 0
}
