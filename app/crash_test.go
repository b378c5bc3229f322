package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/client"
)

// TestCrashTrialsLeaveNothing (finding 1, acceptance): kill -9 during
// mixed publishes (staged uploads and one-request forms, some large
// enough to spool to disk or to go up as multipart uploads) 20 times on
// the local backend and 10 times on Ceph RGW. After the next start-up
// plus one cleanup interval there is no spool file, no temporary file in
// the local backend and no incomplete upload in the bucket; every commit
// that was answered can be fetched with its content; `db check` is clean.
//
// Before the fix form-* spool files of killed processes accumulated
// (175-234 MB per 20 trials) and the killed processes' multipart uploads
// stayed in the bucket, unreported.
func TestCrashTrialsLeaveNothing(t *testing.T) {
	t.Run("local", func(t *testing.T) {
		dir := t.TempDir()
		backend := "  local:\n    type: local\n    path: " + dir + "/objects\n    key_prefix: artifacts\n"
		leftoverCrashTrials(t, dir, backend, "local", 20, 300*time.Millisecond, nil)
	})
	t.Run("ceph", func(t *testing.T) {
		var rgw *s3test.Server
		for _, s := range s3test.Servers(t) {
			if s.Name == "ceph" {
				rgw = &s
			}
		}
		if rgw == nil {
			if os.Getenv("CI") != "" {
				t.Fatal("Ceph RGW is not running")
			}
			t.Skip("Ceph RGW is not running")
		}
		dir := t.TempDir()
		cfg := rgw.NewBucket(t)
		backend := fmt.Sprintf("  rgw:\n    type: s3\n    endpoint_url: %s\n    bucket: %s\n    key_prefix: artifacts\n    access_key_ref: %s\n    secret_key_ref: %s\n    multipart_threshold_bytes: 5242880\n    multipart_chunk_bytes: 5242880\n",
			cfg.EndpointURL, cfg.Bucket, cfg.AccessKeyRef, cfg.SecretKeyRef)
		core := rgw.Client(t)
		leftoverCrashTrials(t, dir, backend, "rgw", 10, 1200*time.Millisecond, func() []string { return s3test.IncompleteUploads(t, core, cfg.Bucket, "") })
	})
}

// leftoverCrashTrials runs the kill -9 trials against one backend. Each
// trial kills the service once at least one publish of the trial was
// answered (so every trial has answered commits to check, however slow
// the machine is) and at least minRun has passed, plus up to minRun more,
// while the other publishers are mid-flight. incomplete, if set, lists
// the backend's incomplete uploads.
func leftoverCrashTrials(t *testing.T, dir, backendYAML, backendID string, trials int, minRun time.Duration, incomplete func() []string) {
	const (
		interval = time.Second
		age      = 2 * time.Second
	)
	cfgFile := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`data_dir: %s/data
server:
  max_body_bytes: 67108864
backends:
%srouting:
  default: %s
cleanup:
  interval: %s
  incomplete_write_age: %s
`, dir, backendYAML, backendID, interval, age)), 0o600)
	spoolDir := filepath.Join(dir, "data", "spool")
	objects := filepath.Join(dir, "objects")
	large := 2 << 20
	if incomplete != nil {
		large = 6 << 20 // above the 5 MiB multipart threshold
	}

	type answered struct {
		name  string
		files map[string][]byte
	}
	var (
		mu   sync.Mutex
		done []answered
		seq  int
	)
	nextSeq := func() int { // a distinct package name and content per publish
		mu.Lock()
		defer mu.Unlock()
		seq++
		return seq
	}
	leftSpool, leftUploads := 0, 0
	for trial := 0; trial < trials; trial++ {
		started := time.Now()
		p := startProc(t, cfgFile)
		// The start-up cleanup removes the spool files of the killed
		// process; local temp files go when the backend opens.
		waitFor(t, interval+2*time.Second, "spool files left by the killed process", func() string {
			return listSpool(spoolDir)
		})
		if incomplete == nil {
			// Only files from before this start are leftovers: the new
			// process's record worker may already be writing the killed
			// process's pending manifest records through the temp directory.
			if s := strayFiles(objects, "artifacts", started); s != "" {
				t.Fatalf("trial %d: temporary files of the killed process after start-up: %s", trial, s)
			}
		}
		c := clientFor(p)
		ctx, cancel := context.WithCancel(context.Background())
		firstAnswer := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		// A form that uploads slowly is always being spooled to disk, so
		// every kill leaves a spool file behind for the next start to find.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				n := nextSeq()
				slowFormPublish(ctx, p, fmt.Sprintf("slowform%d", n), randBytes(uint64(n)+5e6, 1<<20))
			}
		}()
		if incomplete != nil {
			// And, in its own goroutine so that the slow form above is
			// in flight as well, a large upload that is always mid-way
			// (an open multipart upload) when the kill comes.
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					n := nextSeq()
					files := map[string][]byte{"slow.bin": randBytes(uint64(n)+6e6, large)}
					if br, err := c.Begin(ctx, manifestOf(fmt.Sprintf("slowput%d", n), "1", "ci", "release", files)); err == nil && len(br.Needed) == 1 {
						c.Upload(ctx, br.UploadID, br.Needed[0].SHA256, br.Needed[0].Size, &throttled{ctx: ctx, r: bytes.NewReader(files["slow.bin"])})
					} else if ctx.Err() == nil {
						time.Sleep(50 * time.Millisecond) // do not spin on a refused begin
					}
				}
			}()
		}
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					n := nextSeq()
					name := fmt.Sprintf("crash%d", n)
					var files map[string][]byte
					var err error
					if n%2 == 0 {
						files = map[string][]byte{"small.txt": randBytes(uint64(n), 1024), "mid.bin": randBytes(uint64(n)+1e6, 300<<10), "large.bin": randBytes(uint64(n)+2e6, large)}
						err = publishOnce(ctx, c, manifestOf(name, "1", "ci", "release", files), files)
					} else {
						files = map[string][]byte{"spooled.bin": randBytes(uint64(n)+3e6, 1<<20), "note.txt": randBytes(uint64(n)+4e6, 2048)}
						err = formPublish(ctx, p, name, files)
					}
					if err == nil {
						mu.Lock()
						done = append(done, answered{name, files})
						mu.Unlock()
						once.Do(func() { close(firstAnswer) })
					}
				}
			}()
		}
		select {
		case <-firstAnswer:
		case <-time.After(60 * time.Second):
			t.Fatalf("trial %d: no publish answered within 60s", trial)
		}
		time.Sleep(minRun + rand.N(minRun))
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
		cancel()
		wg.Wait()
		if s := listSpool(spoolDir); s != "" {
			leftSpool += strings.Count(s, " ") + 1
		}
		if incomplete != nil {
			leftUploads += len(incomplete())
		}
	}
	t.Logf("%d trials: %d answered commits; spool files seen after the kills: %d, incomplete uploads seen after the kills: %d (summed over trials)",
		trials, len(done), leftSpool, leftUploads)
	if len(done) == 0 {
		t.Fatal("no publish was answered in any trial")
	}
	if leftSpool == 0 {
		t.Error("no kill left a spool file: the trials did not exercise the spool clean-up")
	}
	if incomplete != nil && leftUploads == 0 {
		t.Error("no kill left an incomplete upload: the trials did not exercise their clean-up")
	}

	// The next start-up plus one cleanup interval (the incomplete writes
	// must also have reached incomplete_write_age).
	p := startProc(t, cfgFile)
	waitFor(t, age+interval+3*time.Second, "leftovers after the final start-up", func() string {
		left := listSpool(spoolDir)
		if incomplete == nil {
			left += strayFiles(objects, "artifacts", time.Time{})
		} else if ups := incomplete(); len(ups) > 0 {
			left += " incomplete uploads: " + strings.Join(ups, ", ")
		}
		return left
	})
	c := clientFor(p)
	for _, a := range done {
		for path, data := range a.files {
			resp, body := get(t, c, client.FilePath(a.name, "1", path), nil)
			if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
				t.Fatalf("answered commit %s: %s: status %d, %d bytes (want %d)", a.name, path, resp.StatusCode, len(body), len(data))
			}
		}
	}
	code, out, errOut := runCLI(t, "db", "check", "--config", cfgFile)
	if code != 0 {
		t.Fatalf("db check: exit %d\n%s\n%s", code, out, errOut)
	}
	p.stop(t)
}

// publishOnce is one staged publish without retries.
func publishOnce(ctx context.Context, c *client.Client, m client.Manifest, files map[string][]byte) error {
	br, err := c.Begin(ctx, m)
	if err != nil {
		return err
	}
	bySHA := map[string][]byte{}
	for _, b := range files {
		bySHA[sha(b)] = b
	}
	for _, n := range br.Needed {
		if err := c.Upload(ctx, br.UploadID, n.SHA256, n.Size, bytes.NewReader(bySHA[n.SHA256])); err != nil {
			return err
		}
	}
	_, _, err = c.Commit(ctx, br.UploadID)
	return err
}

// formPublish is one one-request publish; nil only for a 200/201 answer.
func formPublish(ctx context.Context, p *proc, name string, files map[string][]byte) error {
	body, ct := formBody(`{"name":"`+name+`","version":"1","producer":"ci","retention_class":"release"}`, files)
	req, err := http.NewRequestWithContext(ctx, "POST", p.url+"/v1/packages", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 201 {
		return fmt.Errorf("form publish: %s", resp.Status)
	}
	return nil
}

// slowFormPublish sends a one-request publish of one file whose bytes
// arrive over about a second (above the minimum body rate); its answer
// does not matter.
func slowFormPublish(ctx context.Context, p *proc, name string, data []byte) {
	body, ct := formBody(`{"name":"`+name+`","version":"1","producer":"ci","retention_class":"release"}`, map[string][]byte{"slow.bin": data})
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(body); off += 64 << 10 {
			if _, err := pw.Write(body[off:min(off+64<<10, len(body))]); err != nil {
				return
			}
			select {
			case <-ctx.Done():
				pw.CloseWithError(ctx.Err())
				return
			case <-time.After(60 * time.Millisecond):
			}
		}
		pw.Close()
	}()
	req, err := http.NewRequestWithContext(ctx, "POST", p.url+"/v1/packages", pr)
	if err != nil {
		return
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+p.token)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
}

// throttled reads 64 KiB at most every 20 ms.
type throttled struct {
	ctx context.Context
	r   io.Reader
}

func (t *throttled) Read(p []byte) (int, error) {
	select {
	case <-t.ctx.Done():
		return 0, t.ctx.Err()
	case <-time.After(20 * time.Millisecond):
	}
	return t.r.Read(p[:min(len(p), 64<<10)])
}

// waitFor polls check until it returns "" or within runs out.
func waitFor(t *testing.T, within time.Duration, what string, check func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		left := check()
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s, still there after %s: %s", what, within, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func listSpool(dir string) string {
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// strayFiles lists files under a local backend's root that are not
// objects or manifest records. With a non-zero before, only files last
// modified before it count (files of the running process are not strays).
func strayFiles(root, prefix string, before time.Time) string {
	var stray []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if !before.IsZero() {
			if info, err := d.Info(); err != nil || !info.ModTime().Before(before) {
				return nil
			}
		}
		rel, _ := filepath.Rel(root, p)
		if _, ok := backends.ParseObjectKey(prefix, filepath.ToSlash(rel)); !ok && !isRecordFile(root, p) {
			stray = append(stray, rel)
		}
		return nil
	})
	return strings.Join(stray, " ")
}
