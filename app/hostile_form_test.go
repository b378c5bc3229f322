package app

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawForm sends a one-request publish over a raw connection: headers with
// the given Content-Length, then body; then it half-closes (halfClose) or
// keeps the connection open, and returns the response.
func rawForm(t *testing.T, env *testEnv, contentLength int64, body []byte, contentType string, halfClose bool) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(env.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST /v1/packages HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
		env.token, contentType, contentLength)
	conn.Write(body)
	if halfClose {
		conn.(*net.TCPConn).CloseWrite()
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestFormFraming (finding 5): a form whose body ends (half-close) before
// its declared Content-Length is size_mismatch, not a publish; a declared
// length over server.max_body_bytes is 413 at once (as for a PUT); a form
// that stalls is 408 body_timeout, and no answer names socket addresses.
func TestFormFraming(t *testing.T) {
	env := startService(t, strings.Replace(localConfig, "server:\n", "server:\n  body_read_timeout: 1s\n", 1))
	body, ct := formBody(`{"name":"framing","version":"1","producer":"ci","retention_class":"release"}`, map[string][]byte{"f.txt": []byte("complete but short")})
	const limit = 33554432 // max_body_bytes of localConfig

	t.Run("body shorter than Content-Length", func(t *testing.T) {
		resp, out := rawForm(t, env, limit, body, ct, true)
		if code, _ := errCode([]byte(out)); resp.StatusCode != 400 || code != "size_mismatch" {
			t.Fatalf("%d %s; want 400 size_mismatch", resp.StatusCode, out)
		}
	})
	t.Run("Content-Length over the limit", func(t *testing.T) {
		resp, out := rawForm(t, env, limit+1, body, ct, true)
		if code, _ := errCode([]byte(out)); resp.StatusCode != 413 || code != "body_too_large" {
			t.Fatalf("%d %s; want 413 body_too_large", resp.StatusCode, out)
		}
	})
	t.Run("stalled form", func(t *testing.T) {
		// Half a form, then silence with the connection open.
		start := time.Now()
		resp, out := rawForm(t, env, int64(len(body)), body[:len(body)/2], ct, false)
		if code, _ := errCode([]byte(out)); resp.StatusCode != 408 || code != "body_timeout" {
			t.Fatalf("%d %s; want 408 body_timeout", resp.StatusCode, out)
		}
		if strings.Contains(out, "127.0.0.1") || strings.Contains(out, "tcp") {
			t.Fatalf("the answer names the connection: %s", out)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("stalled form answered after %s with a 1s body_read_timeout", d)
		}
	})
	resp, got := rawDo(t, env, "GET", "/v1/packages/framing", nil, nil)
	if resp.StatusCode != 404 {
		t.Fatalf("a framing error published the package: %d %s", resp.StatusCode, got)
	}
	if n := countFiles(t, env.svc.Config.Backends["local"].Path); n != 0 {
		t.Fatalf("%d objects stored", n)
	}
	// The same complete body with its true length publishes.
	resp, out := rawForm(t, env, int64(len(body)), body, ct, false)
	if resp.StatusCode != 201 {
		t.Fatalf("well-framed form: %d %s", resp.StatusCode, out)
	}
}

// TestStalledPutHidesAddresses: a PUT that stalls answers 408 without the
// socket addresses the network error carries.
func TestStalledPutHidesAddresses(t *testing.T) {
	env := startService(t, strings.Replace(localConfig, "server:\n", "server:\n  body_read_timeout: 1s\n", 1))
	data := randBytes(9, 1000)
	br, err := env.c.Begin(ctxT(t), manifestOf("stall", "1", "ci", "release", map[string][]byte{"f": data}))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", strings.TrimPrefix(env.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/uploads/%s/blobs/sha256:%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\nabc", br.UploadID, sha(data), env.token)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	if code, _ := errCode(out); resp.StatusCode != 408 || code != "body_timeout" || strings.Contains(string(out), "127.0.0.1") {
		t.Fatalf("%d %s; want 408 body_timeout without addresses", resp.StatusCode, out)
	}
}

// TestFormTakesAnUploadSlot (finding 3): a one-request publish counts
// against server.max_concurrent_uploads like a PUT.
func TestFormTakesAnUploadSlot(t *testing.T) {
	// No rate check here: the slot holders below must keep their slots.
	env := startService(t, strings.Replace(localConfig, "server:\n", "server:\n  max_concurrent_uploads: 2\n  min_body_rate: 0\n", 1))
	data := randBytes(10, 1000)
	br, err := env.c.Begin(ctxT(t), manifestOf("slots", "1", "ci", "release", map[string][]byte{"f": data}))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		conn, err := net.Dial("tcp", strings.TrimPrefix(env.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "PUT /v1/uploads/%s/blobs/sha256:%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Length: 1000\r\n\r\nx", br.UploadID, sha(data), env.token)
	}
	deadline := time.Now().Add(5 * time.Second)
	for env.svc.API.UploadsInFlight() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the two PUTs never took their slots")
		}
		time.Sleep(10 * time.Millisecond)
	}
	body, ct := formBody(`{"name":"form","version":"1","producer":"ci","retention_class":"release"}`, map[string][]byte{"f": []byte("x")})
	resp, out := rawDo(t, env, "POST", "/v1/packages", http.Header{"Content-Type": {ct}}, body)
	if code, _ := errCode(out); resp.StatusCode != 503 || code != "too_many_uploads" {
		t.Fatalf("form while all slots are held: %d %s; want 503 too_many_uploads", resp.StatusCode, out)
	}
}
