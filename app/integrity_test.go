package app

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/client"
	"artifactstore/internal/digest"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// integrityTarget is one backend the integrity acceptance tests run on:
// the local backend and each real S3 server.
type integrityTarget struct {
	name    string // backend id
	cfgFile string
	c       corrupter
}

// forEachTarget runs fn on the local backend and, in a subtest "s3", on
// each real S3 server (s3test.Servers decides whether a missing server
// skips or fails).
func forEachTarget(t *testing.T, extra string, fn func(t *testing.T, tg integrityTarget)) {
	t.Run("local", func(t *testing.T) {
		dir := t.TempDir()
		fn(t, integrityTarget{name: "local", cfgFile: writeLocalConfig(t, dir, filepath.Join(dir, "objects"), verifyTestConfig+extra),
			c: localCorrupter(filepath.Join(dir, "objects"))})
	})
	t.Run("s3", func(t *testing.T) {
		for _, srv := range s3test.Servers(t) {
			t.Run(srv.Name, func(t *testing.T) {
				dir := t.TempDir()
				bucket := srv.NewBucket(t)
				cfg := filepath.Join(dir, "config.yaml")
				os.WriteFile(cfg, []byte("data_dir: "+dir+"/data\nbackends:\n"+s3BackendYAML(srv.Name, bucket)+"routing:\n  default: "+srv.Name+"\n"+verifyTestConfig+extra), 0o600)
				fn(t, integrityTarget{name: srv.Name, cfgFile: cfg, c: s3Corrupter(srv, bucket.Bucket)})
			})
		}
	})
}

func locationOf(t *testing.T, env *testEnv, d digest.Digest, backend string) *store.Location {
	t.Helper()
	l, err := env.svc.Store.GetLocation(ctxT(t), d.String(), backend)
	if err != nil || l == nil {
		t.Fatalf("location %s on %s: %v %v", d, backend, l, err)
	}
	return l
}

// verifyCLI runs `artifactstore verify` (deep, or quick) against the
// running service and returns its exit code and report.
func verifyCLI(t *testing.T, cfgFile string, quick bool) (int, *verify.Report, string) {
	t.Helper()
	args := []string{"verify", "--config", cfgFile, "--json"}
	if quick {
		args = append(args, "--quick")
	}
	code, out, errOut := runCLI(t, args...)
	var o verifyOutput
	if err := json.Unmarshal([]byte(out), &o); err != nil || len(o.Reports) != 1 {
		t.Fatalf("verify output (exit %d): %v\n%s\n%s", code, err, out, errOut)
	}
	return code, o.Reports[0], out
}

// getRaw fetches path and reads the body, returning the read error too.
func getRaw(t *testing.T, env *testEnv, path string, hdr http.Header) (*http.Response, []byte, error) {
	t.Helper()
	resp, err := env.c.Get(ctxT(t), path, hdr)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func assertUnavailable(t *testing.T, env *testEnv, path string, hdr http.Header) {
	t.Helper()
	resp, body, _ := getRaw(t, env, path, hdr)
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(body, &e)
	if resp.StatusCode != http.StatusServiceUnavailable || e.Error.Code != "content_unavailable" {
		t.Fatalf("GET %s (%v): %d %s, want 503 content_unavailable", path, hdr, resp.StatusCode, body)
	}
	// A cache must not keep the failure as if it were the content.
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" || resp.Header.Get("ETag") != "" || resp.Header.Get("Repr-Digest") != "" {
		t.Fatalf("GET %s (%v): 503 with Cache-Control %q, ETag %q, Repr-Digest %q; want no-store and no content headers",
			path, hdr, cc, resp.Header.Get("ETag"), resp.Header.Get("Repr-Digest"))
	}
}

// TestQuickCheckNeverClearsMismatch is the three steps: a deep
// verify finds the flipped bytes, the quick verify that follows leaves the
// location mismatch and still exits 1, and the corrupted body is never
// served (503 content_unavailable: there is no other location).
func TestQuickCheckNeverClearsMismatch(t *testing.T) {
	forEachTarget(t, "", func(t *testing.T, tg integrityTarget) {
		env := startServiceFile(t, tg.cfgFile, nil)
		files := map[string][]byte{"big.bin": randBytes(1201, 100_000)}
		publish(t, env.c, manifestOf("q", "1", "ci", "release", files), files)
		d := digest.FromBytes(files["big.bin"])
		tg.c.flip(t, d)

		code, rep, out := verifyCLI(t, tg.cfgFile, false)
		if code != exitFailures || rep.ByVerdict["mismatch"] != 1 {
			t.Fatalf("deep verify: exit %d\n%s", code, out)
		}
		code, rep, out = verifyCLI(t, tg.cfgFile, true)
		if code != exitFailures {
			t.Fatalf("quick verify after a mismatch: exit %d, want %d\n%s", code, exitFailures, out)
		}
		if rep.ByVerdict["verified"] != 1 || rep.FailedTotal != 1 || len(rep.StillFailed) != 1 ||
			rep.StillFailed[0].Digest != d.String() || rep.StillFailed[0].Status != store.StatusMismatch ||
			!strings.Contains(rep.StillFailed[0].Action, "republish q@1") {
			t.Fatalf("quick report: %s", out)
		}
		if l := locationOf(t, env, d, tg.name); l.Status != store.StatusMismatch {
			t.Fatalf("location after the quick run: %s, want mismatch", l.Status)
		}
		// The plain output tells the operator what to do.
		_, plain, _ := runCLI(t, "verify", "--config", tg.cfgFile, "--quick")
		if !strings.Contains(plain, "FAILED mismatch "+d.String()) || !strings.Contains(plain, "what to do: ") {
			t.Fatalf("plain quick verify output:\n%s", plain)
		}
		path := client.FilePath("q", "1", "big.bin")
		assertUnavailable(t, env, path, nil)
		assertUnavailable(t, env, path, http.Header{"Range": {"bytes=10-99"}})
	})
}

// TestReadOfCorruptObjectBreaksTransfer: bytes flipped behind the
// service's back and never verified; a GET hashes as it streams, cuts the
// transfer before its end, records the mismatch (event, health), and the
// next GET answers 503. The location was verified before the flip: the
// default trusted_read_window (0) still hashes it.
func TestReadOfCorruptObjectBreaksTransfer(t *testing.T) {
	forEachTarget(t, "", func(t *testing.T, tg integrityTarget) {
		env := startServiceFile(t, tg.cfgFile, nil)
		files := map[string][]byte{"f.bin": randBytes(1301, 300<<10), "ok.txt": []byte("fine")}
		publish(t, env.c, manifestOf("r", "1", "ci", "release", files), files)
		d := digest.FromBytes(files["f.bin"])
		if code, _, out := verifyCLI(t, tg.cfgFile, false); code != 0 {
			t.Fatalf("verify before the flip: %d\n%s", code, out)
		}
		tg.c.flip(t, d)
		path := client.FilePath("r", "1", "f.bin")
		resp, body, err := getRaw(t, env, path, nil)
		if resp.StatusCode != 200 || err == nil || len(body) >= len(files["f.bin"]) {
			t.Fatalf("GET of a corrupted object: status %d, read error %v, %d of %d bytes", resp.StatusCode, err, len(body), len(files["f.bin"]))
		}
		l := locationOf(t, env, d, tg.name)
		if l.Status != store.StatusMismatch || !strings.Contains(l.LastError, "read") {
			t.Fatalf("location after the broken read: %+v", l)
		}
		evs, err := env.c.Events(ctxT(t), 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range evs {
			var v store.Verdict
			json.Unmarshal(e.Data, &v)
			if e.Type == store.EventLocationFailed && v.Digest == d.String() && v.Mode == store.ModeRead && v.Verdict == store.StatusMismatch {
				found = true
			}
		}
		if !found {
			t.Fatal("no location_failed event of mode read for the corrupted object")
		}
		_, hb := get(t, env.c, "/v1/health", nil)
		var doc healthDocument
		json.Unmarshal(hb, &doc)
		if doc.Status != "degraded" || doc.FailedTotal != 1 || len(doc.FailedLocations) != 1 ||
			doc.FailedLocations[0].Digest != d.String() || !slices.Equal(doc.FailedLocations[0].Packages, []string{"r@1"}) ||
			!strings.Contains(doc.FailedLocations[0].Action, "republish r@1") || doc.Action == "" {
			t.Fatalf("health: %s", hb)
		}
		assertUnavailable(t, env, path, nil)
		assertUnavailable(t, env, path, http.Header{"Range": {"bytes=0-9"}})
		// The rest of the package is still served.
		if _, b := get(t, env.c, client.FilePath("r", "1", "ok.txt"), nil); string(b) != "fine" {
			t.Fatalf("other file: %q", b)
		}
		if code, _, out := verifyCLI(t, tg.cfgFile, true); code != exitFailures {
			t.Fatalf("quick verify after a read mismatch: exit %d\n%s", code, out)
		}
	})
}

// TestVerifyPassOlderThanAReadMismatch: a deep check reads an object while
// its bytes are still good; meanwhile a download finds them flipped and
// records a read mismatch; the check's pass, recorded after that, is
// older evidence and leaves the location mismatch (store.RecordVerdict),
// so the next GET still answers 503. The pass is made by hand as the
// engine makes it (At when it ended, Duration since it began).
func TestVerifyPassOlderThanAReadMismatch(t *testing.T) {
	dir := t.TempDir()
	cfg := writeLocalConfig(t, dir, filepath.Join(dir, "objects"), verifyTestConfig)
	env := startServiceFile(t, cfg, nil)
	files := map[string][]byte{"f.bin": randBytes(1307, 300<<10)}
	publish(t, env.c, manifestOf("r", "1", "ci", "release", files), files)
	d := digest.FromBytes(files["f.bin"])
	before := locationOf(t, env, d, "local")
	began := time.Now() // the deep check starts and reads the good bytes
	localCorrupter(filepath.Join(dir, "objects")).flip(t, d)
	path := client.FilePath("r", "1", "f.bin")
	if resp, body, err := getRaw(t, env, path, nil); resp.StatusCode != 200 || err == nil || len(body) >= len(files["f.bin"]) {
		t.Fatalf("GET of a corrupted object: status %d, read error %v, %d bytes", resp.StatusCode, err, len(body))
	}
	pass := store.Verdict{Digest: d.String(), Backend: "local", Mode: store.ModeDeep, Verdict: store.StatusVerified, RunID: "r",
		At: time.Now().UTC(), Duration: time.Since(began), BytesRead: int64(len(files["f.bin"])), Generation: before.Repairs}
	if err := env.svc.Store.RecordVerdict(ctxT(t), pass); err != nil {
		t.Fatal(err)
	}
	l := locationOf(t, env, d, "local")
	if l.Status != store.StatusMismatch || !strings.Contains(l.LastError, "read") || l.LastFailedAt == nil || l.LastVerifiedAt != nil {
		t.Fatalf("location after an older deep pass: %+v", l)
	}
	assertUnavailable(t, env, path, nil)
}

// TestReadFallsBackToAnotherLocation: content on two backends; after a
// read finds one copy corrupted, the next full read and range reads come
// from the other, and republishing repairs the bad one.
func TestReadFallsBackToAnotherLocation(t *testing.T) {
	env := startService(t, `
data_dir: @DIR@/data
backends:
  a:
    type: local
    path: @DIR@/a
    key_prefix: artifacts
  b:
    type: local
    path: @DIR@/b
    key_prefix: artifacts
routing:
  rules:
    - producer: pa
      backend: a
  default: b
`+verifyTestConfig)
	data := randBytes(1401, 200<<10)
	files := map[string][]byte{"x.bin": data}
	publish(t, env.c, manifestOf("pa", "1", "pa", "release", files), files)
	publish(t, env.c, manifestOf("pb", "1", "pb", "release", files), files)
	d := digest.FromBytes(data)
	root := env.svc.Config.Backends["a"].Path
	localCorrupter(root).flip(t, d)

	path := client.FilePath("pb", "1", "x.bin")
	// Locations rank equal (both stored), a before b: the first read hits
	// the corrupted copy and breaks.
	resp, body, err := getRaw(t, env, path, nil)
	if resp.StatusCode != 200 || err == nil || bytes.Equal(body, data) {
		t.Fatalf("first GET: %d, err %v, complete %v", resp.StatusCode, err, bytes.Equal(body, data))
	}
	if l := locationOf(t, env, d, "a"); l.Status != store.StatusMismatch {
		t.Fatalf("a: %s", l.Status)
	}
	for i := 0; i < 2; i++ {
		if _, body := get(t, env.c, path, nil); !bytes.Equal(body, data) {
			t.Fatal("the next read did not come whole from the good copy")
		}
	}
	if resp, body := get(t, env.c, path, http.Header{"Range": {"bytes=102400-102499"}}); resp.StatusCode != 206 || !bytes.Equal(body, data[102400:102500]) {
		t.Fatalf("range read: %d, equal %v", resp.StatusCode, bytes.Equal(body, data[102400:102500]))
	}
	// Republishing the package routed to a repairs a's copy.
	_, br, created := publish(t, env.c, manifestOf("pa", "1", "pa", "release", files), files)
	if created || !br.Repair || len(br.Needed) != 1 {
		t.Fatalf("republish: created %v, begin %+v", created, br)
	}
	if l := locationOf(t, env, d, "a"); l.Status != store.StatusStored || l.Repairs != 1 {
		t.Fatalf("a after the repair: %+v", l)
	}
	got, err := os.ReadFile(filepath.Join(root, filepath.FromSlash("artifacts/sha256/"+d.Hex[:2]+"/"+d.Hex[2:4]+"/"+d.Hex)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a's object after the repair: %v, equal %v", err, bytes.Equal(got, data))
	}
}

// TestRepublishRestoresObjects: an object deleted behind the service's
// back (and another corrupted) is restored by republishing the same
// package: with push (uploading exactly what is missing), with the staged
// protocol and with the one-request form; verification then passes and
// each repair is in the event log.
func TestRepublishRestoresObjects(t *testing.T) {
	forEachTarget(t, "", func(t *testing.T, tg integrityTarget) {
		env := startServiceFile(t, tg.cfgFile, nil)
		files := map[string][]byte{"a.bin": randBytes(1501, 64<<10), "b.bin": randBytes(1502, 40<<10), "c.txt": []byte("unharmed")}
		m := manifestOf("rp", "1", "ci", "release", files)
		publish(t, env.c, m, files)
		da, db := digest.FromBytes(files["a.bin"]), digest.FromBytes(files["b.bin"])
		src := t.TempDir()
		writeTree(t, src, files)
		repairs := func() map[string][]string {
			evs, err := env.c.Events(ctxT(t), 0, 1000)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string][]string{}
			for _, e := range evs {
				if e.Type == store.EventLocationRepaired {
					var r store.RepairEvent
					json.Unmarshal(e.Data, &r)
					out[r.Digest] = append(out[r.Digest], r.Previous)
				}
			}
			return out
		}

		// 1. Deleted; push uploads exactly b.bin.
		tg.c.remove(t, db)
		if code, rep, out := verifyCLI(t, tg.cfgFile, false); code != exitFailures || rep.ByVerdict["missing"] != 1 {
			t.Fatalf("verify after the delete: %d\n%s", code, out)
		}
		assertUnavailable(t, env, client.FilePath("rp", "1", "b.bin"), nil)
		code, out, errOut := runClient(t, env.token, env.url, "push", "--producer", "ci", "--retention-class", "release", "--label", "team=storage", "--json", "rp", "1", src)
		var pr pushResult
		if err := json.Unmarshal([]byte(out), &pr); code != 0 || err != nil {
			t.Fatalf("push: exit %d %v\n%s\n%s", code, err, out, errOut)
		}
		if pr.Existed || pr.UploadedBytes != int64(len(files["b.bin"])) {
			t.Fatalf("push uploaded %d bytes (existed %v), want exactly b.bin's %d", pr.UploadedBytes, pr.Existed, len(files["b.bin"]))
		}
		if code, _, out := verifyCLI(t, tg.cfgFile, false); code != 0 {
			t.Fatalf("verify after the push: %d\n%s", code, out)
		}
		if r := repairs(); !slices.Equal(r[db.String()], []string{"missing"}) {
			t.Fatalf("repair events after push: %v", r)
		}
		// A second push has nothing to do.
		code, out, _ = runClient(t, env.token, env.url, "push", "--producer", "ci", "--retention-class", "release", "--label", "team=storage", "--json", "rp", "1", src)
		json.Unmarshal([]byte(out), &pr)
		if code != 0 || !pr.Existed {
			t.Fatalf("push of a healthy package: exit %d %s", code, out)
		}

		// 2. Deleted and corrupted; the staged protocol lists exactly both.
		tg.c.remove(t, db)
		tg.c.flip(t, da)
		if code, rep, out := verifyCLI(t, tg.cfgFile, false); code != exitFailures || rep.FailedTotal != 2 {
			t.Fatalf("verify after delete and flip: %d\n%s", code, out)
		}
		br, err := env.c.Begin(ctxT(t), m)
		if err != nil {
			t.Fatal(err)
		}
		var needed []string
		for _, n := range br.Needed {
			needed = append(needed, n.Path)
		}
		slices.Sort(needed)
		if br.Status != "open" || !br.Repair || !slices.Equal(needed, []string{"a.bin", "b.bin"}) {
			t.Fatalf("begin: status %s repair %v needed %v", br.Status, br.Repair, needed)
		}
		// Committing before uploading is refused: nothing clears a failure
		// but a verified rewrite.
		if _, _, err := env.c.Commit(ctxT(t), br.UploadID); client.Code(err) != "upload_incomplete" {
			t.Fatalf("commit before the repair uploads: %v", err)
		}
		for _, n := range br.Needed {
			if err := env.c.Upload(ctxT(t), br.UploadID, n.SHA256, n.Size, bytes.NewReader(files[n.Path])); err != nil {
				t.Fatal(err)
			}
		}
		if _, created, err := env.c.Commit(ctxT(t), br.UploadID); err != nil || created {
			t.Fatalf("commit: created %v %v", created, err)
		}
		if code, _, out := verifyCLI(t, tg.cfgFile, false); code != 0 {
			t.Fatalf("verify after the staged republish: %d\n%s", code, out)
		}
		if r := repairs(); !slices.Equal(r[db.String()], []string{"missing", "missing"}) || !slices.Equal(r[da.String()], []string{"mismatch"}) {
			t.Fatalf("repair events after the staged protocol: %v", r)
		}

		// 3. Corrupted; the one-request form rewrites it.
		tg.c.flip(t, da)
		if code, _, out := verifyCLI(t, tg.cfgFile, false); code != exitFailures {
			t.Fatalf("verify after the second flip: %d\n%s", code, out)
		}
		resp := postForm(t, env, "rp", "1", "ci", "release", files)
		if resp != http.StatusOK {
			t.Fatalf("form republish: %d", resp)
		}
		if code, _, out := verifyCLI(t, tg.cfgFile, false); code != 0 {
			t.Fatalf("verify after the form republish: %d\n%s", code, out)
		}
		if r := repairs(); len(r[da.String()]) != 2 {
			t.Fatalf("repair events after the form: %v", r)
		}
		for p, data := range files {
			if _, body := get(t, env.c, client.FilePath("rp", "1", p), nil); !bytes.Equal(body, data) {
				t.Fatalf("%s differs after the repairs", p)
			}
		}
		assertConsistent(t, env.svc)
	})
}

// postForm publishes files with the one-request form (labels as
// manifestOf sets them) and returns the status.
func postForm(t *testing.T, env *testEnv, name, version, producer, class string, files map[string][]byte) int {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormField("manifest")
	fmt.Fprintf(fw, `{"name":%q,"version":%q,"producer":%q,"retention_class":%q,"labels":{"team":"storage"}}`, name, version, producer, class)
	for _, p := range slices.Sorted(maps.Keys(files)) {
		part, _ := mw.CreatePart(map[string][]string{"Content-Disposition": {fmt.Sprintf(`form-data; name="file"; filename=%q`, p)}})
		part.Write(files[p])
	}
	mw.Close()
	resp, err := env.post("/v1/packages", mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Logf("form: %d %s", resp.StatusCode, b)
	}
	return resp.StatusCode
}

// TestConcurrentRepublishesRepair: 16 concurrent republishes of the same
// corrupted content (staged protocol and form) while a deep verification
// runs; afterwards the object is present and verifies and every location
// is verified or stored. 50 trials on local, 10 on each S3 server.
func TestConcurrentRepublishesRepair(t *testing.T) {
	forEachTarget(t, "", func(t *testing.T, tg integrityTarget) {
		trials := 50
		if tg.name != "local" {
			trials = 10
		}
		env := startServiceFile(t, tg.cfgFile, nil)
		b := env.svc.Backends[tg.name]
		for trial := 0; trial < trials; trial++ {
			data := randBytes(uint64(1600+trial), 8<<10+trial)
			files := map[string][]byte{"x.bin": data}
			name := fmt.Sprintf("cr%d", trial)
			m := manifestOf(name, "1", "ci", "release", files)
			publish(t, env.c, m, files)
			d := digest.FromBytes(data)
			tg.c.flip(t, d)
			// A read finds the corruption (it could as well be verify).
			if _, body, err := getRaw(t, env, client.FilePath(name, "1", "x.bin"), nil); err == nil || bytes.Equal(body, data) {
				t.Fatalf("trial %d: the corrupted object was served whole", trial)
			}
			if l := locationOf(t, env, d, tg.name); l.Status != store.StatusMismatch {
				t.Fatalf("trial %d: status %s after the broken read", trial, l.Status)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 17)
			for i := 0; i < 16; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if i%4 == 3 {
						if st := postForm(t, env, name, "1", "ci", "release", files); st != 200 {
							errs <- fmt.Errorf("form republish %d: status %d", i, st)
						}
						return
					}
					ctx := ctxT(t)
					br, err := env.c.Begin(ctx, m)
					if err != nil {
						errs <- fmt.Errorf("begin %d: %w", i, err)
						return
					}
					if br.Status == "exists" {
						return // a repair finished before this begin
					}
					for _, n := range br.Needed {
						if err := env.c.Upload(ctx, br.UploadID, n.SHA256, n.Size, bytes.NewReader(data)); err != nil {
							errs <- fmt.Errorf("upload %d: %w", i, err)
							return
						}
					}
					if _, _, err := env.c.Commit(ctx, br.UploadID); err != nil {
						errs <- fmt.Errorf("commit %d: %w", i, err)
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := env.svc.Verify.Run(ctxT(t), tg.name, store.ModeDeep, verify.Hooks{}); err != nil {
					errs <- fmt.Errorf("deep verify: %w", err)
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("trial %d: %v", trial, err)
			}
			locs, _ := env.svc.Store.Locations(ctxT(t), d.String())
			for _, l := range locs {
				if l.Status != store.StatusVerified && l.Status != store.StatusStored {
					t.Fatalf("trial %d: location on %s is %s (%s)", trial, l.Backend, l.Status, l.LastError)
				}
			}
			rc, err := b.Open(ctxT(t), d, 0, -1)
			if err != nil {
				t.Fatalf("trial %d: object gone: %v", trial, err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if !bytes.Equal(got, data) {
				t.Fatalf("trial %d: the object does not hold the content", trial)
			}
			if t.Failed() {
				return
			}
		}
		rep, err := env.svc.Verify.Run(ctxT(t), tg.name, store.ModeDeep, verify.Hooks{})
		if err != nil || rep.ByVerdict["verified"] != trials || rep.FailedTotal != 0 || rep.Orphans != 0 {
			t.Fatalf("final deep verify: %v %+v", err, rep.RunSummary)
		}
		assertConsistent(t, env.svc)
	})
}

// TestTrustedReadWindow: with verify.trusted_read_window set, a location
// deep-verified within the window is served unhashed (the documented
// trade-off: bytes corrupted since are delivered), while a location that
// was never deep-verified is still hashed and cut off.
func TestTrustedReadWindow(t *testing.T) {
	dir := t.TempDir()
	objects := filepath.Join(dir, "objects")
	env := startServiceFile(t, writeLocalConfig(t, dir, objects, verifyTestConfig+"  trusted_read_window: 1h\n"), nil)
	a := map[string][]byte{"a.bin": randBytes(1701, 64<<10)}
	b := map[string][]byte{"b.bin": randBytes(1702, 64<<10)}
	publish(t, env.c, manifestOf("ta", "1", "ci", "release", a), a)
	if _, err := env.svc.Verify.Run(ctxT(t), "local", store.ModeDeep, verify.Hooks{}); err != nil {
		t.Fatal(err)
	}
	publish(t, env.c, manifestOf("tb", "1", "ci", "release", b), b)
	c := localCorrupter(objects)
	c.flip(t, digest.FromBytes(a["a.bin"]))
	c.flip(t, digest.FromBytes(b["b.bin"]))
	// Inside the window: unhashed, the whole (corrupted) body arrives.
	resp, body, err := getRaw(t, env, client.FilePath("ta", "1", "a.bin"), nil)
	if resp.StatusCode != 200 || err != nil || len(body) != len(a["a.bin"]) || bytes.Equal(body, a["a.bin"]) {
		t.Fatalf("trusted read: %d, %v, %d bytes", resp.StatusCode, err, len(body))
	}
	// Stored, never deep-verified: hashed, broken.
	resp, body, err = getRaw(t, env, client.FilePath("tb", "1", "b.bin"), nil)
	if resp.StatusCode != 200 || err == nil || len(body) >= len(b["b.bin"]) {
		t.Fatalf("untrusted read: %d, %v, %d bytes", resp.StatusCode, err, len(body))
	}
	if l := locationOf(t, env, digest.FromBytes(b["b.bin"]), "local"); l.Status != store.StatusMismatch {
		t.Fatalf("b: %s", l.Status)
	}
	// Negative windows are refused.
	bad := writeLocalConfig(t, filepath.Join(dir, "bad"), objects, "verify:\n  trusted_read_window: -1s\n")
	if _, err := LoadConfig(LoadOptions{File: bad}); err == nil || !strings.Contains(err.Error(), "verify.trusted_read_window") {
		t.Fatalf("negative window: %v", err)
	}
}
