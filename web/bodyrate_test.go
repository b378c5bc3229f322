package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestSlowHandlerAfterSmallBodyKeepsItsRequest: a request whose small body
// (below the window's quota) was read completely must not lose its context
// or its connection while the handler works on for longer than the rate
// window (a commit that copies content, a begin waiting for the database).
// A read after the body's end used to set a read deadline on the
// connection again, while net/http's background read (which watches for
// the client going away) was waiting on it: that read then timed out,
// cancelled the request and closed the connection, and the client saw EOF.
func TestSlowHandlerAfterSmallBodyKeepsItsRequest(t *testing.T) {
	testSlowHandlerKeepsItsRequest(t, func(w http.ResponseWriter, r *http.Request, window time.Duration) string {
		body := &countingBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: 10 * time.Second,
			minRate: 1024, window: window}
		if _, err := io.ReadAll(body); err != nil {
			return err.Error()
		}
		// A decoder checking for trailing data reads once more after EOF.
		if n, err := body.Read(make([]byte, 16)); n != 0 || err != io.EOF {
			return "read after EOF"
		}
		return ""
	}, func(url string) *http.Request {
		req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"name":"small"}`))
		return req
	})
}

// TestBodylessRequestKeepsItsContext: a request without a body (a DELETE,
// a commit) whose handler reads the empty body and then works for longer
// than the rate window keeps its context and connection. net/http watches
// such a connection with a background read from the start; a read deadline
// set by the first read of the empty body used to time that read out,
// cancelling the request (and every later request on the connection).
func TestBodylessRequestKeepsItsContext(t *testing.T) {
	testSlowHandlerKeepsItsRequest(t, func(w http.ResponseWriter, r *http.Request, window time.Duration) string {
		body := newCountingBody(w, r, 10*time.Second, 1024, window)
		if n, err := body.Read(make([]byte, 16)); n != 0 || err != io.EOF {
			return "empty body: want EOF"
		}
		return ""
	}, func(url string) *http.Request {
		req, _ := http.NewRequest(http.MethodDelete, url, nil)
		return req
	})
}

// testSlowHandlerKeepsItsRequest serves requests whose handler reads its
// body with read (which returns what went wrong, or "") and then works
// for three rate windows; it sends three requests made by newReq over the
// same keep-alive connection and fails unless each kept its context to
// the end and got the handler's answer.
func testSlowHandlerKeepsItsRequest(t *testing.T, read func(w http.ResponseWriter, r *http.Request, window time.Duration) string, newReq func(url string) *http.Request) {
	t.Helper()
	const window = 300 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if msg := read(w, r, window); msg != "" {
			http.Error(w, msg, http.StatusBadRequest)
			return
		}
		select {
		case <-r.Context().Done():
			http.Error(w, "request cancelled while the handler worked", http.StatusInternalServerError)
			return
		case <-time.After(3 * window):
		}
		io.WriteString(w, "done")
	}))
	defer srv.Close()
	for i := 0; i < 3; i++ { // the same keep-alive connection each time
		resp, err := http.DefaultClient.Do(newReq(srv.URL))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "done" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, b)
		}
	}
}

// TestCutRacingTheBodysEndClosesItsConnection: a cut (an upload slot
// taken over) that lands while the last read is in flight, after net/http
// saw the body end and started its background read, times that read out
// and cancels the connection's context. The answer closes the connection,
// whatever the handler made of the cut (here the S3 backend's case: its
// reader checks the context first, and the upload fails "cancelled", 503),
// so no later request inherits the cancelled context. The interleaving is
// set up by hand: the body is read to its end under a countingBody that
// says a read is in flight.
func TestCutRacingTheBodysEndClosesItsConnection(t *testing.T) {
	s := New(nil, Options{MinBodyRate: 1024, BodyRateWindow: time.Second})
	s.Handle("GET /next", ScopeOpen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.Context().Err(); err != nil {
			http.Error(w, "started cancelled: "+err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "fine")
	}))
	s.Handle("PUT /upload", ScopeOpen, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := r.Body.(*countingBody)
		inner := body.ReadCloser
		body.mu.Lock()
		body.waitingSince = time.Now().Add(-time.Second) // a read blocked for 1s, delivering nothing
		body.mu.Unlock()
		io.Copy(io.Discard, inner) // ... whose inner read reaches the end: the background read starts
		if !body.cutIfLagging(0) {
			t.Error("the lagging body was not cut")
		}
		body.mu.Lock()
		body.waitingSince = time.Time{}
		body.mu.Unlock()
		select {
		case <-r.Context().Done(): // the background read timed out
		case <-time.After(5 * time.Second):
			t.Error("the connection's context was not cancelled: the test no longer sets up the race")
		}
		s.fail(w, r, r.Context().Err())
	}))
	srv := httptest.NewServer(s)
	defer srv.Close()
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/upload", strings.NewReader("all of it"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close {
			t.Fatalf("cut request: %d close=%v %q; want 503 cancelled with Connection: close", resp.StatusCode, resp.Close, b)
		}
		resp, err = http.Get(srv.URL + "/next")
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("the request after the cut one: %d %q", resp.StatusCode, b)
		}
	}
}

// slowEnd delivers its whole content in one read that blocks for delay.
type slowEnd struct {
	data  []byte
	delay time.Duration
}

func (s *slowEnd) Read(p []byte) (int, error) {
	if len(s.data) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.delay)
	n := copy(p, s.data)
	s.data = s.data[n:]
	if len(s.data) == 0 {
		return n, io.EOF
	}
	return n, nil
}
func (s *slowEnd) Close() error { return nil }

// TestBodyEndingInItsLastReadIsNotCut: a body whose last read completes it
// after the rate window, below the rate, is whole: it is not cut off (and
// no deadline is set once it ended).
func TestBodyEndingInItsLastReadIsNotCut(t *testing.T) {
	body := &countingBody{ReadCloser: &slowEnd{data: []byte("small"), delay: 60 * time.Millisecond},
		idle: time.Second, minRate: 1 << 20, window: 50 * time.Millisecond}
	got, err := io.ReadAll(body)
	if err != nil || string(got) != "small" {
		t.Fatalf("got %q, %v; want the whole body", got, err)
	}
	if body.wasCut() {
		t.Fatal("the body was cut after it ended")
	}
}
