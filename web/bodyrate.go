package web

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// countingBody counts the request body bytes actually read and enforces
// how fast a client must deliver them:
//
//   - each read waits at most idle for the next bytes
//     (server.body_read_timeout);
//   - over every window of time spent waiting for the client
//     (server.body_rate_window), at least minRate bytes per second of it
//     must arrive (server.min_body_rate). A client that sends one byte
//     just before every idle deadline is cut off at the end of its
//     window, so it cannot hold a connection and an upload slot forever.
//
// Only time blocked in Read counts: while the server itself is busy (a
// slow backend between reads) the client is not charged. A cut-off body
// answers every later read with a *slowBodyError (a net.Error whose
// Timeout is true: 408 body_timeout) and sets the connection's read
// deadline into the past, so the server does not linger on the rest.
type countingBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	idle    time.Duration
	minRate int64
	window  time.Duration

	mu           sync.Mutex
	n            int64         // bytes read in all
	winBytes     int64         // bytes read in the current window
	waited       time.Duration // time blocked in Read in the current window
	waitingSince time.Time     // when the current Read started blocking; zero if none
	cut          error         // non-nil once the body was cut off
	eof          bool          // the body has ended; later reads touch no deadline
}

// newCountingBody wraps r's body. A request without a body (net/http
// gives it http.NoBody) counts as ended from the start: net/http watches
// its connection with a background read from the first moment, and a
// read deadline set by a read of the empty body would time that read out
// once the handler works longer than the deadline.
func newCountingBody(w http.ResponseWriter, r *http.Request, idle time.Duration, minRate int64, window time.Duration) *countingBody {
	return &countingBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: idle,
		minRate: minRate, window: window, eof: r.Body == nil || r.Body == http.NoBody}
}

// slowBodyError is why a body was cut off. It says nothing about the
// connection (addresses) since it is shown to the client.
type slowBodyError struct {
	got     int64
	window  time.Duration
	minRate int64
	idle    time.Duration
}

func (e *slowBodyError) Error() string {
	if e.minRate == 0 || e.window == 0 {
		return fmt.Sprintf("the request body stalled for longer than %s (server.body_read_timeout)", e.idle)
	}
	return fmt.Sprintf("the request body arrived too slowly: %d bytes in %s, below %d bytes per second (server.min_body_rate over server.body_rate_window)",
		e.got, e.window, e.minRate)
}
func (e *slowBodyError) Timeout() bool   { return true }
func (e *slowBodyError) Temporary() bool { return false }

var _ net.Error = (*slowBodyError)(nil)

func (c *countingBody) needed() int64 {
	return c.minRate * int64(c.window) / int64(time.Second)
}

func (c *countingBody) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.cut != nil {
		err := c.cut
		c.mu.Unlock()
		return 0, err
	}
	if c.eof {
		// Once the body has ended, net/http watches the connection for the
		// client going away (a background read, deadline cleared). Setting
		// a read deadline now would time that read out, cancel the request
		// and close the connection under a handler that is still working.
		c.mu.Unlock()
		return 0, io.EOF
	}
	now := time.Now()
	var deadline time.Time
	if c.idle > 0 {
		deadline = now.Add(c.idle)
	}
	rateBound := false
	if c.minRate > 0 && c.window > 0 && c.winBytes < c.needed() {
		// The window's quota is not met yet: it must be by the window's end.
		if end := now.Add(c.window - c.waited); deadline.IsZero() || end.Before(deadline) {
			deadline, rateBound = end, true
		}
	}
	c.waitingSince = now
	// The deadline is set under c.mu: a cut (cutIfLagging, on another
	// goroutine) either comes first, and this read then finds its
	// deadline in the past, or after, and puts it there; it can never be
	// overwritten by a deadline computed before it.
	if c.rc != nil && !deadline.IsZero() {
		c.rc.SetReadDeadline(deadline)
	}
	c.mu.Unlock()
	n, err := c.ReadCloser.Read(p)
	after := time.Now()

	c.mu.Lock()
	defer c.mu.Unlock()
	c.waitingSince = time.Time{}
	if err == io.EOF {
		c.eof = true
	}
	c.n += int64(n)
	c.winBytes += int64(n)
	c.waited += after.Sub(now)
	if c.cut != nil { // cut off by the upload slots while we waited
		return n, c.cut
	}
	if c.eof {
		return n, err // the whole body arrived: no rate left to enforce
	}
	var ne net.Error
	timedOut := err != nil && errors.As(err, &ne) && ne.Timeout()
	if c.minRate > 0 && c.window > 0 && c.waited >= c.window {
		if c.winBytes < c.needed() {
			c.cutOff(&slowBodyError{got: c.winBytes, window: c.window, minRate: c.minRate})
			return n, c.cut
		}
		c.waited, c.winBytes = 0, 0
	}
	if timedOut {
		if rateBound {
			c.cutOff(&slowBodyError{got: c.winBytes, window: c.window, minRate: c.minRate})
		} else {
			c.cutOff(&slowBodyError{idle: c.idle})
		}
		return n, c.cut
	}
	return n, err
}

// cutOff records why the body ends and stops further reads at once; the
// caller holds c.mu. A read blocked on the client is woken by moving the
// connection's read deadline into the past, which also keeps net/http
// from lingering on the rest of the body after the handler. Callers never
// cut a body that has ended (Read returns before its rate checks,
// cutIfLagging refuses): net/http then watches the connection with a
// background read, and a deadline would time it out and cancel the
// connection's context. (A cut racing the last bytes of a body can still
// do that; the answer to a request whose body was cut closes its
// connection, recorder.closeIfCut, so no later request inherits it.)
func (c *countingBody) cutOff(why error) {
	if c.cut == nil {
		c.cut = why
	}
	if c.rc != nil {
		c.rc.SetReadDeadline(time.Unix(1, 0))
	}
}

// wasCut reports whether the body was cut off.
func (c *countingBody) wasCut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut != nil
}

// bytesRead returns the body bytes read so far.
func (c *countingBody) bytesRead() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// lagging reports whether the client has, after at least grace spent
// waiting for it in this window, delivered less than minRate per second
// of that waiting; if so it cuts the body off. The upload slots use it to
// give a slot to a new upload instead of a client that holds one without
// sending.
func (c *countingBody) cutIfLagging(grace time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.minRate <= 0 || c.cut != nil || c.eof {
		return false // a body that has ended holds its slot for the handler's work
	}
	waited := c.waited
	if !c.waitingSince.IsZero() {
		waited += time.Since(c.waitingSince)
	}
	if waited < grace || c.winBytes >= c.minRate*int64(waited)/int64(time.Second) {
		return false
	}
	c.cutOff(&slowBodyError{got: c.winBytes, window: waited.Round(time.Millisecond), minRate: c.minRate})
	return true
}
