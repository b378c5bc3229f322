package app

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// formRSSBound is the documented bound (docs/API.md, "Limits") on the
// resident memory of a service under the hostile forms below, with the
// default form memory (server.form_memory_bytes, 64 MiB) and upload slots.
const formRSSBound = 256 << 20

// procMemory reads a VmXXX value (bytes) of pid from /proc.
func procMemory(t testing.TB, pid int, field string) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestHostileFormsStayInMemoryBound (finding 3, acceptance): 100
// concurrent hostile one-request publishes (a third send 100,000 one-byte
// parts, a third 32 parts of 256 KiB and then trickle, a third trickle
// from the start) keep the service process's peak RSS (VmHWM, from /proc)
// under formRSSBound, and it serves normally afterwards with no spool
// file left. Before the fix 8 forms of 100,000 one-byte parts took the
// process to 1.11 GB.
func TestHostileFormsStayInMemoryBound(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	cfg := strings.Replace(strings.ReplaceAll(localConfig, "@DIR@", dir), "server:\n", "server:\n  body_rate_window: 2s\n", 1)
	os.WriteFile(cfgFile, []byte(cfg), 0o600)
	p := startProc(t, cfgFile)
	pid := p.cmd.Process.Pid
	addr := strings.TrimPrefix(p.url, "http://")
	before := procMemory(t, pid, "VmRSS")

	const boundary = "hostileboundary"
	header := func(declared int) string {
		return fmt.Sprintf("POST /v1/packages HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n",
			p.token, boundary, declared)
	}
	manifestPart := func(name string) string {
		return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n" +
			`{"name":"` + name + `","version":"1","producer":"ci","retention_class":"release"}` + "\r\n"
	}
	filePart := func(path string, body []byte) []byte {
		return append([]byte("--"+boundary+"\r\nContent-Disposition: form-data; name=\"file\"; filename=\""+path+"\"\r\n\r\n"), append(body, "\r\n"...)...)
	}
	type outcome struct {
		kind   string
		status string
	}
	results := make(chan outcome, 100)
	var wg sync.WaitGroup
	client := func(kind string, i int, send func(conn net.Conn) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				results <- outcome{kind, "dial: " + err.Error()}
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(60 * time.Second))
			answered := make(chan string, 1)
			go func() {
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					answered <- "closed without an answer"
					return
				}
				answered <- resp.Status
			}()
			conn.Write([]byte(header(32 << 20)))
			conn.Write([]byte(manifestPart(fmt.Sprintf("%s%d", kind, i))))
			go send(conn)
			results <- outcome{kind, <-answered}
		}()
	}
	trickle := func(conn net.Conn, every time.Duration) error {
		conn.Write([]byte("--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.bin\"\r\n\r\n"))
		for {
			if _, err := conn.Write([]byte{'x'}); err != nil {
				return err
			}
			time.Sleep(every)
		}
	}
	for i := 0; i < 34; i++ {
		client("tiny", i, func(conn net.Conn) error {
			var buf bytes.Buffer
			for j := 0; j < 100000; j++ {
				buf.Write(filePart(fmt.Sprintf("f%d", j), []byte{'a'}))
				if buf.Len() > 64<<10 {
					if _, err := conn.Write(buf.Bytes()); err != nil {
						return err
					}
					buf.Reset()
				}
			}
			_, err := conn.Write(buf.Bytes())
			return err
		})
	}
	for i := 0; i < 33; i++ {
		client("large", i, func(conn net.Conn) error {
			for j := 0; j < 32; j++ {
				if _, err := conn.Write(filePart(fmt.Sprintf("big%d", j), randBytes(uint64(i*100+j), 256<<10))); err != nil {
					return err
				}
			}
			return trickle(conn, 500*time.Millisecond)
		})
	}
	for i := 0; i < 33; i++ {
		client("trickle", i, func(conn net.Conn) error { return trickle(conn, 500*time.Millisecond) })
	}
	// Sample the resident size while they run (VmHWM below is the peak).
	stop := make(chan struct{})
	sampled := make(chan struct{})
	var peakSeen int64
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				if v := procMemory(t, pid, "VmRSS"); v > peakSeen {
					peakSeen = v
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-sampled // peakSeen is the sampler's until it has returned
	close(results)
	byKind := map[string]map[string]int{}
	for r := range results {
		if byKind[r.kind] == nil {
			byKind[r.kind] = map[string]int{}
		}
		byKind[r.kind][r.status]++
	}
	hwm := procMemory(t, pid, "VmHWM")
	t.Logf("answers: %v", byKind)
	t.Logf("service RSS: %.1f MiB before, %.1f MiB peak sampled, VmHWM %.1f MiB (bound %d MiB)",
		float64(before)/(1<<20), float64(peakSeen)/(1<<20), float64(hwm)/(1<<20), formRSSBound>>20)
	for kind, st := range byKind {
		for s := range st {
			if strings.HasPrefix(s, "2") {
				t.Errorf("a hostile %s form was answered %s", kind, s)
			}
		}
	}
	if hwm > formRSSBound {
		t.Errorf("peak RSS %.1f MiB exceeds the documented bound of %d MiB", float64(hwm)/(1<<20), formRSSBound>>20)
	}
	// Still serving, and nothing left in the spool.
	c := clientFor(p)
	files := map[string][]byte{"ok.txt": []byte("after the storm")}
	publish(t, c, manifestOf("calm", "1", "ci", "release", files), files)
	if entries, _ := os.ReadDir(filepath.Join(dir, "data", "spool")); len(entries) != 0 {
		t.Errorf("%d spool files left after every form ended", len(entries))
	}
}
