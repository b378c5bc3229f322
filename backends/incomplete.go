package backends

import (
	"context"
	"time"
)

// IncompleteWrite is a write a backend started and neither finished nor
// cleaned up, because the process doing it was killed mid-Put. Put's
// contract (nothing left behind on error) cannot cover a process that
// dies; such writes hold storage until they are aborted.
type IncompleteWrite struct {
	// Name identifies the write within its backend (for logs and reports).
	Name string `json:"name"`
	// Started is when the write began.
	Started time.Time `json:"started"`
}

// IncompleteWriter is implemented by backends whose interrupted writes can
// outlive the process that made them. It is optional: a backend that
// does not implement it has nothing of the kind (or cleans it up itself
// when it is constructed).
type IncompleteWriter interface {
	// IncompleteWrites lists the incomplete writes under this backend's
	// key layout, oldest first. It includes writes in progress now, which
	// cannot be told apart from abandoned ones except by age.
	IncompleteWrites(ctx context.Context) ([]IncompleteWrite, error)

	// AbortIncompleteWrites discards the incomplete writes that started
	// before before, and returns those it discarded. A write that
	// finishes or disappears meanwhile is not an error. Callers pick
	// before far enough in the past that no live Put is that old.
	AbortIncompleteWrites(ctx context.Context, before time.Time) ([]IncompleteWrite, error)
}

// AsIncompleteWriter finds the IncompleteWriter of b, looking through
// decorators (such as Instrument) that expose the backend they wrap with
// an Unwrap() Backend method.
func AsIncompleteWriter(b Backend) (IncompleteWriter, bool) {
	for b != nil {
		if iw, ok := b.(IncompleteWriter); ok {
			return iw, true
		}
		u, ok := b.(interface{ Unwrap() Backend })
		if !ok {
			return nil, false
		}
		b = u.Unwrap()
	}
	return nil, false
}
