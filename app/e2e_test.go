package app

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"testing"

	"artifactstore/internal/client"
)

// localConfig is the local-only configuration of the end-to-end suite.
const localConfig = `
data_dir: @DIR@/data
server:
  max_body_bytes: 33554432
backends:
  local:
    type: local
    path: @DIR@/objects
    key_prefix: artifacts
routing:
  default: local
`

func TestE2ELocal(t *testing.T) {
	env := startService(t, localConfig)
	runE2E(t, env, e2eRoutes{{"ci-a", "release"}, {"ci-b", "nightly"}})
}

// e2eRoute is a producer and retention class the suite publishes under; a
// config may route each one to a different backend.
type e2eRoute struct{ producer, class string }
type e2eRoutes []e2eRoute

// runE2E is THE end-to-end suite: publish, dedup, list, fetch, ranges,
// conflicts and bad input. It runs unchanged against every configuration;
// only the config differs between runs. Package names are unique per run so
// a config may share a backend with other runs.
func runE2E(t *testing.T, env *testEnv, routes e2eRoutes) {
	c := env.c
	for i, rt := range routes {
		rt := rt
		pfx := fmt.Sprintf("r%d-", i)
		t.Run(fmt.Sprintf("route%d-%s-%s", i, rt.producer, rt.class), func(t *testing.T) {
			t.Run("PublishFetchRanges", func(t *testing.T) { e2ePublishFetch(t, env, rt, pfx) })
			t.Run("IdempotentAndConflict", func(t *testing.T) { e2eConflicts(t, env, rt, pfx) })
			t.Run("Dedup", func(t *testing.T) { e2eDedup(t, env, rt, pfx) })
			t.Run("BadInputLeavesNothing", func(t *testing.T) { e2eBadInput(t, env, rt, pfx) })
			t.Run("OneRequestForm", func(t *testing.T) { e2eForm(t, env, rt, pfx) })
		})
	}
	t.Run("ListAndVersions", func(t *testing.T) { e2eList(t, env, routes) })
	t.Run("Events", func(t *testing.T) { e2eEvents(t, env) })
	t.Run("BackendsMatchRegistry", func(t *testing.T) { assertConsistent(t, env.svc) })
	_ = c
}

func threeFiles(seed uint64) map[string][]byte {
	return map[string][]byte{
		"empty.txt":           {},
		"docs/readme-1k.bin":  randBytes(seed, 1024),
		"bin/payload-20m.bin": randBytes(seed+1, 20<<20),
	}
}

func e2ePublishFetch(t *testing.T, env *testEnv, rt e2eRoute, pfx string) {
	c := env.c
	files := threeFiles(1)
	name := pfx + "app"
	m := manifestOf(name, "1.0.0", rt.producer, rt.class, files)
	p, br, created := publish(t, c, m, files)
	if !created {
		t.Fatal("first publish reported the package as existing")
	}
	if len(br.Needed) != 3 {
		// On a backend shared with other runs the content may be known.
		t.Logf("begin asked for %d of 3 files", len(br.Needed))
	}
	if p.Name != name || p.Version != "1.0.0" || p.Producer != rt.producer || len(p.Files) != 3 {
		t.Fatalf("committed package = %+v", p)
	}
	for _, f := range p.Files {
		// Other routes of the same run may have stored the same content
		// elsewhere; the routed backend must hold it.
		found := false
		for _, l := range f.Locations {
			if l.Backend == br.Backend && l.Status == "stored" && !l.StoredAt.IsZero() {
				found = true
			}
		}
		if !found {
			t.Fatalf("file %s locations = %+v, want one on %s with status stored", f.Path, f.Locations, br.Backend)
		}
	}
	for path, data := range files {
		d := "sha256:" + sha(data)
		for _, url := range []string{client.FilePath(name, "1.0.0", path), "/v1/blobs/" + d} {
			resp, body := get(t, c, url, nil)
			if resp.StatusCode != 200 || !bytes.Equal(body, data) {
				t.Fatalf("GET %s: status %d, %d bytes, equal %v", url, resp.StatusCode, len(body), bytes.Equal(body, data))
			}
			if resp.Header.Get("ETag") != `"`+d+`"` {
				t.Fatalf("GET %s: ETag %q", url, resp.Header.Get("ETag"))
			}
			sum := sha256.Sum256(data)
			if want := "sha-256=:" + base64.StdEncoding.EncodeToString(sum[:]) + ":"; resp.Header.Get("Repr-Digest") != want {
				t.Fatalf("GET %s: Repr-Digest %q, want %q", url, resp.Header.Get("Repr-Digest"), want)
			}
			if resp.ContentLength != int64(len(data)) {
				t.Fatalf("GET %s: Content-Length %d", url, resp.ContentLength)
			}
			resp, _ = get(t, c, url, http.Header{"If-None-Match": {`"` + d + `"`}})
			if resp.StatusCode != http.StatusNotModified {
				t.Fatalf("GET %s with matching If-None-Match: status %d, want 304", url, resp.StatusCode)
			}
		}
	}
	// Ranges, byte-exact, on the 1 KiB and 20 MiB files.
	big := files["bin/payload-20m.bin"]
	small := files["docs/readme-1k.bin"]
	ranges := []struct {
		path       string
		data       []byte
		hdr        string
		start, end int // inclusive; start < 0: expect 416
	}{
		{"docs/readme-1k.bin", small, "bytes=0-0", 0, 0},
		{"docs/readme-1k.bin", small, "bytes=100-199", 100, 199},
		{"docs/readme-1k.bin", small, "bytes=1000-", 1000, 1023},
		{"docs/readme-1k.bin", small, "bytes=-10", 1014, 1023},
		{"docs/readme-1k.bin", small, "bytes=1000-99999", 1000, 1023},
		{"docs/readme-1k.bin", small, "bytes=1024-", -1, -1},
		{"docs/readme-1k.bin", small, "bytes=5000-6000", -1, -1},
		{"bin/payload-20m.bin", big, "bytes=8388600-8388700", 8388600, 8388700},
		{"bin/payload-20m.bin", big, "bytes=16777000-20971519", 16777000, 20971519},
		{"bin/payload-20m.bin", big, "bytes=-1", 20971519, 20971519},
		{"empty.txt", nil, "bytes=0-", -1, -1},
	}
	for _, r := range ranges {
		resp, body := get(t, c, client.FilePath(name, "1.0.0", r.path), http.Header{"Range": {r.hdr}})
		if r.start < 0 {
			if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
				t.Fatalf("%s %s: status %d, want 416", r.path, r.hdr, resp.StatusCode)
			}
			if want := fmt.Sprintf("bytes */%d", len(r.data)); resp.Header.Get("Content-Range") != want {
				t.Fatalf("%s %s: Content-Range %q, want %q", r.path, r.hdr, resp.Header.Get("Content-Range"), want)
			}
			continue
		}
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, r.data[r.start:r.end+1]) {
			t.Fatalf("%s %s: status %d, %d bytes, want 206 with bytes %d-%d", r.path, r.hdr, resp.StatusCode, len(body), r.start, r.end)
		}
		if want := fmt.Sprintf("bytes %d-%d/%d", r.start, r.end, len(r.data)); resp.Header.Get("Content-Range") != want {
			t.Fatalf("%s %s: Content-Range %q, want %q", r.path, r.hdr, resp.Header.Get("Content-Range"), want)
		}
	}
	// Manifest by name@version.
	got, err := c.GetPackage(ctxT(t), name, "1.0.0")
	if err != nil || len(got.Files) != 3 || got.TotalBytes != int64(1024+20<<20) {
		t.Fatalf("get package: %v %+v", err, got)
	}
	resp, _ := get(t, c, client.FilePath(name, "1.0.0", "nope.txt"), nil)
	if resp.StatusCode != 404 {
		t.Fatalf("missing file: status %d, want 404", resp.StatusCode)
	}
	resp, _ = get(t, c, "/v1/packages/"+name+"/9.9.9", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("missing version: status %d, want 404", resp.StatusCode)
	}
}

func e2eConflicts(t *testing.T, env *testEnv, rt e2eRoute, pfx string) {
	c := env.c
	ctx := ctxT(t)
	files := map[string][]byte{"a.txt": []byte(pfx + "conflict test a"), "b.bin": randBytes(7, 300<<10)}
	name := pfx + "conf"
	m := manifestOf(name, "2.0", rt.producer, rt.class, files)
	// Two sessions for identical content, both begun before either commits.
	b1, err := c.Begin(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := c.Begin(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	for _, br := range []*client.BeginResponse{b1, b2} {
		for _, n := range br.Needed {
			var data []byte
			for _, d := range files {
				if sha(d) == n.SHA256 {
					data = d
				}
			}
			if err := c.Upload(ctx, br.UploadID, n.SHA256, n.Size, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, created, err := c.Commit(ctx, b1.UploadID); err != nil || !created {
		t.Fatalf("first commit: created %v, err %v", created, err)
	}
	if _, created, err := c.Commit(ctx, b2.UploadID); err != nil || created {
		t.Fatalf("second identical commit: created %v, err %v; want idempotent success", created, err)
	}
	// Republish identical content: begin says it exists.
	br, err := c.Begin(ctx, m)
	if err != nil || br.Status != "exists" || br.Package == nil || len(br.Needed) != 0 {
		t.Fatalf("republish identical: %v %+v", err, br)
	}
	before := takeSnapshot(t, env.svc)
	// Same name@version, different content: 409 at begin.
	files2 := map[string][]byte{"a.txt": []byte(pfx + "conflict test a, changed"), "b.bin": files["b.bin"]}
	_, err = c.Begin(ctx, manifestOf(name, "2.0", rt.producer, rt.class, files2))
	if client.Code(err) != "conflict" {
		t.Fatalf("different content at begin: %v, want conflict", err)
	}
	// Different labels are different content too.
	m3 := manifestOf(name, "2.0", rt.producer, rt.class, files)
	m3.Labels = map[string]string{"team": "other"}
	if _, err = c.Begin(ctx, m3); client.Code(err) != "conflict" {
		t.Fatalf("different labels: %v, want conflict", err)
	}
	// A race: two different contents begun before either commits; the
	// loser gets 409 at commit and its staged bytes are removed.
	mA := manifestOf(name, "3.0", rt.producer, rt.class, map[string][]byte{"x": []byte(pfx + "race A")})
	mB := manifestOf(name, "3.0", rt.producer, rt.class, map[string][]byte{"x": []byte(pfx + "race B")})
	bA, err := c.Begin(ctx, mA)
	if err != nil {
		t.Fatal(err)
	}
	bB, err := c.Begin(ctx, mB)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Upload(ctx, bA.UploadID, sha([]byte(pfx+"race A")), int64(len(pfx+"race A")), strings.NewReader(pfx+"race A")); err != nil {
		t.Fatal(err)
	}
	if err := c.Upload(ctx, bB.UploadID, sha([]byte(pfx+"race B")), int64(len(pfx+"race B")), strings.NewReader(pfx+"race B")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Commit(ctx, bA.UploadID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Commit(ctx, bB.UploadID); client.Code(err) != "conflict" {
		t.Fatalf("losing commit: %v, want conflict", err)
	}
	after := takeSnapshot(t, env.svc)
	// The winner added one package, one blob, one location, its events and
	// its object; the loser added nothing.
	for _, k := range []string{"packages", "blobs", "storage_locations"} {
		if after.counts[k] != before.counts[k]+1 {
			t.Errorf("bbolt bucket %s: %d -> %d, want +1", k, before.counts[k], after.counts[k])
		}
	}
	if after.counts["upload_sessions"] != before.counts["upload_sessions"] || after.counts["upload_refs"] != before.counts["upload_refs"] {
		t.Errorf("sessions left behind: %s", before.diff(after))
	}
	p, err := c.GetPackage(ctx, name, "3.0")
	if err != nil || p.Files[0].SHA256 != sha([]byte(pfx+"race A")) {
		t.Fatalf("winner package: %v %+v", err, p)
	}
	assertConsistent(t, env.svc)
}

func e2eDedup(t *testing.T, env *testEnv, rt e2eRoute, pfx string) {
	c := env.c
	shared := randBytes(99, 5<<20)
	first := map[string][]byte{"lib/shared.so": shared, "one.txt": []byte(pfx + "only in the first")}
	_, _, _ = publish(t, c, manifestOf(pfx+"dedup-a", "1", rt.producer, rt.class, first), first)
	second := map[string][]byte{"vendor/shared-copy.so": shared, "two.txt": []byte(pfx + "only in the second"), "again/two.txt": []byte(pfx + "only in the second")}
	m := manifestOf(pfx+"dedup-b", "1", rt.producer, rt.class, second)
	br, err := c.Begin(ctxT(t), m)
	if err != nil {
		t.Fatal(err)
	}
	if len(br.Needed) != 1 || br.Needed[0].SHA256 != sha(second["two.txt"]) {
		t.Fatalf("begin of a package sharing content asks for %+v, want only two.txt's content once", br.Needed)
	}
	if want := int64(len(shared) + len(second["two.txt"])); br.SkippedBytes != want {
		t.Fatalf("skipped_bytes = %d, want %d", br.SkippedBytes, want)
	}
	if err := c.Upload(ctxT(t), br.UploadID, br.Needed[0].SHA256, br.Needed[0].Size, bytes.NewReader(second["two.txt"])); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Commit(ctxT(t), br.UploadID); err != nil {
		t.Fatal(err)
	}
	// The shared blob is stored once in the backend the route chose.
	snap := takeSnapshot(t, env.svc)
	n := 0
	for d := range snap.objects[br.Backend] {
		if d.Hex == sha(shared) {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("shared content found %d times in backend %s", n, br.Backend)
	}
	for path, data := range second {
		_, body := get(t, c, client.FilePath(pfx+"dedup-b", "1", path), nil)
		if !bytes.Equal(body, data) {
			t.Fatalf("fetch %s of the deduplicated package differs", path)
		}
	}
}

func e2eBadInput(t *testing.T, env *testEnv, rt e2eRoute, pfx string) {
	c := env.c
	ctx := ctxT(t)
	good := func() client.Manifest {
		return manifestOf(pfx+"bad", "1", rt.producer, rt.class, map[string][]byte{"f.txt": []byte(pfx + "good bytes")})
	}
	before := takeSnapshot(t, env.svc)
	check := func(t *testing.T) {
		t.Helper()
		if d := before.diff(takeSnapshot(t, env.svc)); d != "" {
			t.Fatalf("bad input left something behind: %s", d)
		}
	}
	beginCases := []struct {
		name string
		mod  func(m *client.Manifest)
		code string
	}{
		{"path traversal", func(m *client.Manifest) { m.Files[0].Path = "../../etc/passwd" }, "invalid_path"},
		{"inner dotdot", func(m *client.Manifest) { m.Files[0].Path = "a/../../b" }, "invalid_path"},
		{"absolute path", func(m *client.Manifest) { m.Files[0].Path = "/etc/passwd" }, "invalid_path"},
		{"backslash", func(m *client.Manifest) { m.Files[0].Path = `a\b` }, "invalid_path"},
		{"NUL", func(m *client.Manifest) { m.Files[0].Path = "a\x00b" }, "invalid_path"},
		{"dot segment", func(m *client.Manifest) { m.Files[0].Path = "a/./b" }, "invalid_path"},
		{"empty path", func(m *client.Manifest) { m.Files[0].Path = "" }, "invalid_path"},
		{"duplicate path", func(m *client.Manifest) { m.Files = append(m.Files, m.Files[0]) }, "duplicate_path"},
		{"file and dir", func(m *client.Manifest) {
			m.Files = append(m.Files, client.File{Path: "f.txt/inner", Size: 1, SHA256: sha([]byte("x"))})
		}, "duplicate_path"},
		{"bad name", func(m *client.Manifest) { m.Name = "bad name!" }, "invalid_name"},
		{"empty name", func(m *client.Manifest) { m.Name = "" }, "invalid_name"},
		{"long name", func(m *client.Manifest) { m.Name = strings.Repeat("n", 129) }, "invalid_name"},
		{"bad version", func(m *client.Manifest) { m.Version = "1.0/../2" }, "invalid_version"},
		{"bad producer", func(m *client.Manifest) { m.Producer = "ci bot" }, "invalid_producer"},
		{"bad retention class", func(m *client.Manifest) { m.RetentionClass = "Release!" }, "invalid_retention_class"},
		{"bad label key", func(m *client.Manifest) { m.Labels = map[string]string{"Bad Key": "v"} }, "invalid_label"},
		{"control char in label value", func(m *client.Manifest) { m.Labels = map[string]string{"k": "a\nb"} }, "invalid_label"},
		{"bad digest", func(m *client.Manifest) { m.Files[0].SHA256 = "xyz" }, "invalid_digest"},
		{"negative size", func(m *client.Manifest) { m.Files[0].Size = -1 }, "invalid_size"},
		{"oversize file", func(m *client.Manifest) { m.Files[0].Size = 33554433 }, "body_too_large"},
	}
	for _, bc := range beginCases {
		t.Run(bc.name, func(t *testing.T) {
			m := good()
			bc.mod(&m)
			_, err := c.Begin(ctx, m)
			if client.Code(err) != bc.code {
				t.Fatalf("begin: got %v, want code %s", err, bc.code)
			}
			check(t)
		})
	}
	t.Run("malformed JSON", func(t *testing.T) {
		for _, body := range []string{`{"name":`, `[]`, `{"name":"x","bogus":1}`, `{"name":"a"} {"name":"b"}`} {
			resp, err := env.post("/v1/uploads", "application/json", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			var e struct{ Error client.Error }
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode != 400 || e.Error.Code != "invalid_json" || e.Error.Message == "" {
				t.Fatalf("body %q: status %d, error %+v", body, resp.StatusCode, e.Error)
			}
		}
		check(t)
	})
	// Upload failures: the session stays open, nothing reaches the backend,
	// and aborting leaves the database as it was.
	uploadCase := func(name string, do func(br *client.BeginResponse) error, code string) {
		t.Run(name, func(t *testing.T) {
			br, err := c.Begin(ctx, good())
			if err != nil {
				t.Fatal(err)
			}
			if len(br.Needed) != 1 {
				t.Fatalf("needed = %+v", br.Needed)
			}
			err = do(br)
			if code != "" && client.Code(err) != code {
				t.Fatalf("got %v, want code %s", err, code)
			}
			if _, _, err := c.Commit(ctx, br.UploadID); client.Code(err) != "upload_incomplete" {
				t.Fatalf("commit after failed upload: %v, want upload_incomplete", err)
			}
			if err := c.Abort(ctx, br.UploadID); err != nil {
				t.Fatal(err)
			}
			check(t)
		})
	}
	want := []byte(pfx + "good bytes")
	uploadCase("wrong digest", func(br *client.BeginResponse) error {
		wrong := bytes.Repeat([]byte("z"), len(want))
		return c.Upload(ctx, br.UploadID, br.Needed[0].SHA256, int64(len(wrong)), bytes.NewReader(wrong))
	}, "digest_mismatch")
	uploadCase("short content length", func(br *client.BeginResponse) error {
		return c.Upload(ctx, br.UploadID, br.Needed[0].SHA256, int64(len(want)-1), bytes.NewReader(want[:len(want)-1]))
	}, "size_mismatch")
	uploadCase("long content length", func(br *client.BeginResponse) error {
		long := append(append([]byte{}, want...), 'x')
		return c.Upload(ctx, br.UploadID, br.Needed[0].SHA256, int64(len(long)), bytes.NewReader(long))
	}, "size_mismatch")
	uploadCase("body cut short by the client", func(br *client.BeginResponse) error {
		// Announce the right length, send half, hang up.
		conn, err := net.Dial("tcp", strings.TrimPrefix(env.url, "http://"))
		if err != nil {
			return err
		}
		fmt.Fprintf(conn, "PUT /v1/uploads/%s/blobs/sha256:%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", br.UploadID, br.Needed[0].SHA256, len(want))
		conn.Write(want[:len(want)/2])
		conn.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err == nil && resp.StatusCode < 400 {
			return fmt.Errorf("short body accepted with status %d", resp.StatusCode)
		}
		return nil
	}, "")
	uploadCase("content not in the session", func(br *client.BeginResponse) error {
		other := []byte("not declared")
		return c.Upload(ctx, br.UploadID, sha(other), int64(len(other)), bytes.NewReader(other))
	}, "content_not_needed")
	uploadCase("malformed digest in URL", func(br *client.BeginResponse) error {
		return c.Upload(ctx, br.UploadID, "NOTHEX", 3, strings.NewReader("abc"))
	}, "invalid_digest")
	t.Run("unknown upload session", func(t *testing.T) {
		err := c.Upload(ctx, "no-such-session", sha(want), int64(len(want)), bytes.NewReader(want))
		if client.Code(err) != "not_found" {
			t.Fatalf("got %v, want not_found", err)
		}
		check(t)
	})
	t.Run("oversize form body", func(t *testing.T) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormField("manifest")
		fmt.Fprintf(fw, `{"name":"%sbig","version":"1","producer":"%s","retention_class":"%s"}`, pfx, rt.producer, rt.class)
		part, _ := mw.CreateFormFile("file", "big.bin")
		part.Write(make([]byte, 33554433))
		mw.Close()
		resp, err := env.post("/v1/packages", mw.FormDataContentType(), &buf)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d, want 413", resp.StatusCode)
		}
		check(t)
	})
	t.Run("form path traversal", func(t *testing.T) {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormField("manifest")
		fmt.Fprintf(fw, `{"name":"%sevil","version":"1","producer":"%s","retention_class":"%s"}`, pfx, rt.producer, rt.class)
		h := make(map[string][]string)
		h["Content-Disposition"] = []string{`form-data; name="file"; filename="../../evil.sh"`}
		part, _ := mw.CreatePart(h)
		part.Write([]byte("#!/bin/sh"))
		mw.Close()
		resp, err := env.post("/v1/packages", mw.FormDataContentType(), &buf)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error client.Error }
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != 400 || e.Error.Code != "invalid_path" {
			t.Fatalf("status %d, %+v; want 400 invalid_path", resp.StatusCode, e.Error)
		}
		check(t)
	})
}

func e2eForm(t *testing.T, env *testEnv, rt e2eRoute, pfx string) {
	files := map[string][]byte{"dist/app.tar.gz": randBytes(5, 3<<20), "README": []byte(pfx + "form readme")}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormField("manifest")
	fmt.Fprintf(fw, `{"name":"%sform","version":"1.2.3","producer":"%s","retention_class":"%s","labels":{"git.sha":"abc123"}}`, pfx, rt.producer, rt.class)
	for _, p := range []string{"dist/app.tar.gz", "README"} {
		h := map[string][]string{"Content-Disposition": {fmt.Sprintf(`form-data; name="file"; filename="%s"`, p)}}
		part, _ := mw.CreatePart(h)
		part.Write(files[p])
	}
	mw.Close()
	raw := buf.Bytes()
	for i, want := range []int{201, 200} {
		resp, err := env.post("/v1/packages", mw.FormDataContentType(), bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		var p client.Package
		json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != want || len(p.Files) != 2 || p.Labels["git.sha"] != "abc123" {
			t.Fatalf("form publish #%d: status %d (want %d), %+v", i+1, resp.StatusCode, want, p)
		}
	}
	for path, data := range files {
		_, body := get(t, env.c, client.FilePath(pfx+"form", "1.2.3", path), nil)
		if !bytes.Equal(body, data) {
			t.Fatalf("form-published %s differs on fetch", path)
		}
	}
}

func e2eList(t *testing.T, env *testEnv, routes e2eRoutes) {
	c := env.c
	ctx := ctxT(t)
	rt := routes[0]
	for _, v := range []string{"1.0", "1.1", "2.0-rc1", "0.9"} {
		f := map[string][]byte{"v.txt": []byte("version " + v)}
		m := manifestOf("listed", v, rt.producer, rt.class, f)
		m.Labels = map[string]string{"channel": map[bool]string{true: "beta", false: "stable"}[strings.Contains(v, "rc")]}
		publish(t, c, m, f)
	}
	vs, next, err := c.Versions(ctx, "listed", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range vs {
		got = append(got, p.Version)
	}
	if strings.Join(got, ",") != "0.9,2.0-rc1,1.1,1.0" || next != "" {
		t.Fatalf("versions newest first = %v (next %q)", got, next)
	}
	// Cursor pagination, one at a time.
	got = nil
	cursor := ""
	for i := 0; i < 10; i++ {
		vs, next, err := c.Versions(ctx, "listed", cursor, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range vs {
			got = append(got, p.Version)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if strings.Join(got, ",") != "0.9,2.0-rc1,1.1,1.0" {
		t.Fatalf("paged versions = %v", got)
	}
	ps, _, err := c.List(ctx, client.ListOptions{Name: "listed", Labels: map[string]string{"channel": "beta"}})
	if err != nil || len(ps) != 1 || ps[0].Version != "2.0-rc1" {
		t.Fatalf("label filter: %v %+v", err, ps)
	}
	ps, _, err = c.List(ctx, client.ListOptions{Producer: rt.producer, RetentionClass: rt.class, Name: "listed"})
	if err != nil || len(ps) != 4 {
		t.Fatalf("producer+class filter: %v, %d packages", err, len(ps))
	}
	ps, _, err = c.List(ctx, client.ListOptions{Producer: "nobody"})
	if err != nil || len(ps) != 0 {
		t.Fatalf("filter matching nothing: %v, %d packages", err, len(ps))
	}
	// Page through everything two at a time; no package twice, none lost.
	seen := map[string]bool{}
	cursor = ""
	for {
		ps, next, err := c.List(ctx, client.ListOptions{Cursor: cursor, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			k := p.Name + "@" + p.Version
			if seen[k] {
				t.Fatalf("%s listed twice", k)
			}
			seen[k] = true
		}
		if next == "" {
			break
		}
		cursor = next
	}
	all, _, _ := c.List(ctx, client.ListOptions{Limit: 1000})
	if len(seen) != len(all) || len(all) < 4 {
		t.Fatalf("paged listing saw %d packages, one page of 1000 shows %d", len(seen), len(all))
	}
	if _, _, err := c.List(ctx, client.ListOptions{Cursor: "!!bad"}); client.Code(err) != "invalid_cursor" {
		t.Fatalf("bad cursor: %v", err)
	}
}

func e2eEvents(t *testing.T, env *testEnv) {
	c := env.c
	ctx := ctxT(t)
	evs, err := c.Events(ctx, 0, 1000)
	if err != nil || len(evs) == 0 {
		t.Fatalf("events: %v, %d", err, len(evs))
	}
	var last uint64
	types := map[string]int{}
	for _, e := range evs {
		if e.Seq <= last || e.ID == "" || e.Source == "" || e.Time.IsZero() || e.Subject == "" || len(e.Data) == 0 {
			t.Fatalf("bad event after seq %d: %+v", last, e)
		}
		last = e.Seq
		types[e.Type]++
	}
	if types["v1.package.created"] == 0 || types["v1.storage.location_created"] == 0 {
		t.Fatalf("event types = %v", types)
	}
	// after= skips what was seen.
	tail, err := c.Events(ctx, evs[len(evs)-2].Seq, 10)
	if err != nil || len(tail) != 1 || tail[0].Seq != last {
		t.Fatalf("events after %d: %v %+v", evs[len(evs)-2].Seq, err, tail)
	}
	// Every committed package has exactly one created event.
	all, _, _ := c.List(ctx, client.ListOptions{Limit: 1000})
	if types["v1.package.created"] != len(all) {
		t.Fatalf("%d package.created events for %d packages", types["v1.package.created"], len(all))
	}
}
