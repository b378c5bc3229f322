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
	const window = 300 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := &countingBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: 10 * time.Second,
			minRate: 1024, window: window}
		if _, err := io.ReadAll(body); err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		// A decoder checking for trailing data reads once more after EOF.
		if n, err := body.Read(make([]byte, 16)); n != 0 || err != io.EOF {
			http.Error(w, "read after EOF", http.StatusBadRequest)
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
		resp, err := http.Post(srv.URL, "application/json", strings.NewReader(`{"name":"small"}`))
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

// TestBodylessRequestKeepsItsContext: a request without a body (a DELETE,
// a commit) whose handler reads the empty body and then works for longer
// than the rate window keeps its context and connection. net/http watches
// such a connection with a background read from the start; a read deadline
// set by the first read of the empty body used to time that read out,
// cancelling the request (and every later request on the connection).
func TestBodylessRequestKeepsItsContext(t *testing.T) {
	const window = 300 * time.Millisecond
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := newCountingBody(w, r, 10*time.Second, 1024, window)
		if n, err := body.Read(make([]byte, 16)); n != 0 || err != io.EOF {
			http.Error(w, "empty body: want EOF", http.StatusBadRequest)
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
		req, _ := http.NewRequest(http.MethodDelete, srv.URL, nil)
		resp, err := http.DefaultClient.Do(req)
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
// and cancels the connection's context. The request is answered 408 with
// Connection: close, so no later request inherits the cancelled context.
// The interleaving is set up by hand: the body is read to its end under
// a countingBody that says a read is in flight.
func TestCutRacingTheBodysEndClosesItsConnection(t *testing.T) {
	s := New(nil, Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			if err := r.Context().Err(); err != nil {
				http.Error(w, "started cancelled: "+err.Error(), http.StatusInternalServerError)
				return
			}
			io.WriteString(w, "fine")
			return
		}
		body := newCountingBody(w, r, 10*time.Second, 1024, time.Second)
		body.mu.Lock()
		body.waitingSince = time.Now().Add(-time.Second) // a read blocked for 1s, delivering nothing
		body.mu.Unlock()
		io.Copy(io.Discard, r.Body) // ... whose inner read reaches the end: the background read starts
		if !body.cutIfLagging(0) {
			t.Error("the lagging body was not cut")
		}
		body.mu.Lock()
		body.waitingSince = time.Time{}
		body.mu.Unlock()
		time.Sleep(50 * time.Millisecond) // the background read times out
		_, err := body.Read(make([]byte, 1))
		s.fail(w, r, &bodyReadError{err})
	}))
	defer srv.Close()
	for i := 0; i < 3; i++ {
		resp, err := http.Post(srv.URL, "application/octet-stream", strings.NewReader("all of it"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || !resp.Close {
			t.Fatalf("cut request: %d close=%v %q; want 408 with Connection: close", resp.StatusCode, resp.Close, b)
		}
		resp, err = http.Get(srv.URL)
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
