package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// connLog records, per client connection, the last requests written and
// responses read on it, so a test that meets a connection reset or an
// unexpected EOF can say what the connection carried before: which
// request, which answer, whether it said Connection: close, and how
// long ago. (TestTricklingUploadsDoNotStarvePublishers has failed a few
// times in the whole suite with a publisher's request reset by the
// server on a kept-alive connection; this is the evidence for the next
// time.)
type connLog struct {
	mu    sync.Mutex
	start time.Time
	conns map[string]*connHistory // by the client's local address
}

type connHistory struct {
	dialed time.Time
	events []string // the last few, oldest first
}

func newConnLog() *connLog { return &connLog{start: time.Now(), conns: map[string]*connHistory{}} }

// instrument makes every new connection of tr record into l.
func (l *connLog) instrument(tr *http.Transport) {
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		l.conns[c.LocalAddr().String()] = &connHistory{dialed: time.Now()}
		l.mu.Unlock()
		return &loggedConn{Conn: c, l: l, key: c.LocalAddr().String()}, nil
	}
}

func (l *connLog) add(key, ev string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.conns[key]
	if h == nil {
		return
	}
	h.events = append(h.events, fmt.Sprintf("%.3fs %s", time.Since(l.start).Seconds(), ev))
	if len(h.events) > 8 {
		h.events = h.events[len(h.events)-8:]
	}
}

// about returns the history of the connection err names ("read tcp
// <local>-><remote>: ..."), or "" if err names none that l knows.
func (l *connLog) about(err error) string {
	s := err.Error()
	i := strings.Index(s, "tcp ")
	if i < 0 {
		return ""
	}
	rest := s[i+4:]
	j := strings.Index(rest, "->")
	if j < 0 {
		return ""
	}
	key := rest[:j]
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.conns[key]
	if h == nil {
		return ""
	}
	return fmt.Sprintf("connection %s dialed at %.3fs, now %.3fs; last events: %s", key, h.dialed.Sub(l.start).Seconds(),
		time.Since(l.start).Seconds(), strings.Join(h.events, " | "))
}

type loggedConn struct {
	net.Conn
	l   *connLog
	key string
}

func (c *loggedConn) Write(p []byte) (int, error) {
	if line, _, ok := bytes.Cut(p, []byte("\r\n")); ok && bytes.Contains(line, []byte(" HTTP/1.1")) {
		c.l.add(c.key, "wrote "+string(line))
	}
	n, err := c.Conn.Write(p)
	if err != nil {
		c.l.add(c.key, "write error: "+err.Error())
	}
	return n, err
}

func (c *loggedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if i := bytes.Index(p[:n], []byte("HTTP/1.1 ")); i >= 0 {
			head := p[i:n]
			if j := bytes.Index(head, []byte("\r\n\r\n")); j >= 0 {
				head = head[:j]
			}
			line, _, _ := bytes.Cut(head, []byte("\r\n"))
			ev := "read " + string(line)
			if bytes.Contains(bytes.ToLower(head), []byte("connection: close")) {
				ev += " (Connection: close)"
			}
			c.l.add(c.key, ev)
		}
	}
	if err != nil {
		c.l.add(c.key, "read error: "+err.Error())
	}
	return n, err
}

func (c *loggedConn) Close() error {
	c.l.add(c.key, "closed by the client")
	return c.Conn.Close()
}

// The log names the connection a reset names, with what it carried.
func TestConnLogTellsWhatAResetConnectionCarried(t *testing.T) {
	var n sync.Mutex
	calls := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Lock()
		calls++
		first := calls == 1
		n.Unlock()
		if first {
			w.Write([]byte("ok"))
			return
		}
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		c.(*net.TCPConn).SetLinger(0) // close with a reset
		c.Close()
	}))
	defer ts.Close()
	srv := ts.URL
	l := newConnLog()
	tr := &http.Transport{}
	l.instrument(tr)
	hc := &http.Client{Transport: tr}
	resp, err := hc.Post(srv+"/a", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	time.Sleep(100 * time.Millisecond) // the connection goes back to the pool
	_, err = hc.Post(srv+"/b", "text/plain", strings.NewReader("y"))
	if err == nil {
		t.Fatal("the second request on the connection succeeded")
	}
	h := l.about(err)
	for _, want := range []string{"wrote POST /a HTTP/1.1", "read HTTP/1.1 200 OK", "wrote POST /b HTTP/1.1", "read error"} {
		if !strings.Contains(h, want) {
			t.Fatalf("history %q (for %v) lacks %q", h, err, want)
		}
	}
}
