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
