package app

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestSlowClientsAreDropped: a client that trickles its request headers,
// or its body, past the timeouts is disconnected, while other clients are
// served normally meanwhile.
func TestSlowClientsAreDropped(t *testing.T) {
	env := startService(t, strings.Replace(localConfig, "server:\n", "server:\n  read_header_timeout: 1s\n  body_read_timeout: 1s\n", 1))
	addr := strings.TrimPrefix(env.url, "http://")
	files := map[string][]byte{"f": []byte("served while a slow client waits")}
	publish(t, env.c, manifestOf("slow", "1", "ci", "release", files), files)

	// trickle writes the prefix fast and then one byte every interval until
	// the server closes the connection; it returns how long that took.
	trickle := func(prefix, slow string, interval time.Duration) (time.Duration, error) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		start := time.Now()
		conn.Write([]byte(prefix))
		closed := make(chan struct{})
		go func() {
			// The server answers (408/400) or just closes: either way the
			// read ends when the connection is dropped.
			io.Copy(io.Discard, bufio.NewReader(conn))
			close(closed)
		}()
		for i := 0; i < len(slow); i++ {
			select {
			case <-closed:
				return time.Since(start), nil
			case <-time.After(interval):
			}
			if _, err := conn.Write([]byte{slow[i]}); err != nil {
				<-closed
				return time.Since(start), nil
			}
		}
		select {
		case <-closed:
			return time.Since(start), nil
		case <-time.After(10 * time.Second):
			return 0, fmt.Errorf("the server kept a trickling connection open for %s", time.Since(start))
		}
	}
	type result struct {
		d   time.Duration
		err error
	}
	headerDone := make(chan result, 1)
	go func() {
		d, err := trickle("GET /v1/packages HTTP/1.1\r\n", "Host: slow\r\nX-Padding: "+strings.Repeat("x", 200)+"\r\n\r\n", 300*time.Millisecond)
		headerDone <- result{d, err}
	}()
	br, err := env.c.Begin(ctxT(t), manifestOf("slowbody", "1", "ci", "release", map[string][]byte{"big": make([]byte, 1000)}))
	if err != nil {
		t.Fatal(err)
	}
	bodyDone := make(chan result, 1)
	go func() {
		prefix := fmt.Sprintf("PUT /v1/uploads/%s/blobs/sha256:%s HTTP/1.1\r\nHost: slow\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\n",
			br.UploadID, sha(make([]byte, 1000)), env.token)
		d, err := trickle(prefix, strings.Repeat("\x00", 1000), 1500*time.Millisecond)
		bodyDone <- result{d, err}
	}()
	// Meanwhile other clients are served.
	served := 0
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		resp, body := get(t, env.c, "/v1/packages/slow/1/files/f", nil)
		if resp.StatusCode != 200 || string(body) != string(files["f"]) {
			t.Fatalf("normal client not served while slow clients wait: %d", resp.StatusCode)
		}
		served++
		time.Sleep(50 * time.Millisecond)
	}
	for name, ch := range map[string]chan result{"header trickle": headerDone, "body trickle": bodyDone} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("%s: %v", name, r.err)
		}
		if r.d > 5*time.Second {
			t.Fatalf("%s: dropped only after %s with 1s timeouts", name, r.d)
		}
		t.Logf("%s dropped after %s", name, r.d.Round(10*time.Millisecond))
	}
	if served < 5 {
		t.Fatalf("only %d normal requests served meanwhile", served)
	}
	// The trickled upload stored nothing and the session can be aborted.
	if n := countFiles(t, env.svc.Config.Backends["local"].Path); n != 1 {
		t.Fatalf("%d objects in the backend, want only the published one", n)
	}
}
