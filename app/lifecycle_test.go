package app

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/client"
	"artifactstore/internal/digest"
	"artifactstore/internal/lifecycle"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// objectsOn lists a backend itself (not the registry): digest -> size.
func objectsOn(t testing.TB, b backends.Backend) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if err := b.Walk(ctxT(t), func(i backends.Info) error { out[i.Digest.String()] = i.Size; return nil }); err != nil {
		t.Fatalf("walk %s: %v", b.ID(), err)
	}
	return out
}

func shaDigest(b []byte) string { return "sha256:" + sha(b) }

// runCLIEnv runs the command line in process and returns its exit code and
// output.
func runCLIEnv(t testing.TB, environ []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(ctxT(t), append([]string{"artifactstore"}, args...), Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Environ: environ})
	return code, out.String(), errb.String()
}

func TestDeletePackage(t *testing.T) {
	env := startService(t, "data_dir: @DIR@/data\nauth:\n  producer_delete: true\n")
	ctx := ctxT(t)
	shared := randBytes(1, 3000)
	only1 := randBytes(2, 2000)
	files1 := map[string][]byte{"shared.bin": shared, "one.bin": only1}
	files2 := map[string][]byte{"shared.bin": shared, "two.bin": randBytes(3, 1000)}
	publish(t, env.c, manifestOf("app", "1", "ci", "nightly", files1), files1)
	publish(t, env.c, manifestOf("app", "2", "ci", "nightly", files2), files2)

	// A reason is required.
	_, err := env.c.Delete(ctx, "app", "1", "  ")
	if client.Code(err) != "invalid_reason" {
		t.Fatalf("delete without a reason: %v, want invalid_reason", err)
	}
	// A publish token of another producer may not delete; one of the
	// package's producer may (auth.producer_delete is on).
	other, _, _ := env.svc.Store.CreateToken(ctx, "other", store.ScopePublish, []string{"someone-else"}, 0)
	oc := client.New(env.url)
	oc.Token = other
	if _, err := oc.Delete(ctx, "app", "1", "cleanup"); client.Code(err) != "producer_forbidden" {
		t.Fatalf("delete with another producer's token: %v, want producer_forbidden", err)
	}
	readTok, _, _ := env.svc.Store.CreateToken(ctx, "reader", store.ScopeRead, nil, 0)
	rc := client.New(env.url)
	rc.Token = readTok
	if _, err := rc.Delete(ctx, "app", "1", "cleanup"); client.Code(err) != "forbidden" {
		t.Fatalf("delete with a read token: %v, want forbidden", err)
	}
	ciTok, _, _ := env.svc.Store.CreateToken(ctx, "ci-bot", store.ScopePublish, []string{"ci"}, 0)
	cc := client.New(env.url)
	cc.Token = ciTok
	res, err := cc.Delete(ctx, "app", "1", "superseded by 2")
	if err != nil {
		t.Fatalf("delete by the producer's token: %v", err)
	}
	if res.Deleted.Name != "app" || res.Reason != "superseded by 2" || !strings.Contains(res.By, "ci-bot") {
		t.Fatalf("delete answer: %+v", res)
	}
	if _, err := env.c.GetPackage(ctx, "app", "1"); client.Code(err) != "not_found" {
		t.Fatalf("deleted package still answers: %v", err)
	}
	if _, err := env.c.Delete(ctx, "app", "1", "again"); client.Code(err) != "not_found" {
		t.Fatalf("second delete: %v, want not_found", err)
	}
	vs, _, err := env.c.Versions(ctx, "app", "", 10)
	if err != nil || len(vs) != 1 || vs[0].Version != "2" {
		t.Fatalf("versions after delete: %v %+v", err, vs)
	}
	evs, err := env.c.Events(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, e := range evs {
		if e.Type == store.EventPackageDeleted && e.Subject == "app@1" {
			var data struct{ Reason, By string }
			json.Unmarshal(e.Data, &data)
			found = data.Reason == "superseded by 2" && strings.Contains(data.By, "ci-bot")
		}
	}
	if !found {
		t.Fatalf("no v1.package.deleted event with reason and actor in %d events", len(evs))
	}

	// The content stays until gc; gc removes only what no package needs.
	b := env.svc.Backends["local"]
	if _, ok := objectsOn(t, b)[shaDigest(only1)]; !ok {
		t.Fatal("delete removed content before gc")
	}
	dry, err := env.svc.Lifecycle.GC(ctx, lifecycle.GCOptions{DryRun: true})
	if err != nil || dry.Backends["local"].Objects != 1 || dry.Backends["local"].Bytes != int64(len(only1)) {
		t.Fatalf("gc dry run: %v %+v", err, dry.Backends["local"])
	}
	if _, ok := objectsOn(t, b)[shaDigest(only1)]; !ok {
		t.Fatal("a dry run deleted content")
	}
	rep, err := env.svc.Lifecycle.GC(ctx, lifecycle.GCOptions{})
	if err != nil || rep.Backends["local"].Objects != 1 {
		t.Fatalf("gc: %v %+v", err, rep.Backends["local"])
	}
	objs := objectsOn(t, b)
	if _, ok := objs[shaDigest(only1)]; ok {
		t.Fatal("content only the deleted package used is still stored after gc")
	}
	if _, ok := objs[shaDigest(shared)]; !ok {
		t.Fatal("gc deleted content another package uses")
	}
	assertConsistent(t, env.svc)
	if _, body := get(t, env.c, client.FilePath("app", "2", "shared.bin"), nil); !bytes.Equal(body, shared) {
		t.Fatal("the remaining package no longer reads back")
	}
	problems, err := env.svc.Store.Check(ctx, env.svc.Registry.BackendIDs(), 10)
	if err != nil || len(problems) > 0 {
		t.Fatalf("db check after delete and gc: %v %v", err, problems)
	}
}

func TestDeleteNeedsAdminWithoutProducerDelete(t *testing.T) {
	env := startService(t, "data_dir: @DIR@/data\n")
	ctx := ctxT(t)
	files := map[string][]byte{"a": []byte("a")}
	publish(t, env.c, manifestOf("x", "1", "ci", "nightly", files), files)
	ciTok, _, _ := env.svc.Store.CreateToken(ctx, "ci-bot", store.ScopePublish, []string{"ci"}, 0)
	cc := client.New(env.url)
	cc.Token = ciTok
	if _, err := cc.Delete(ctx, "x", "1", "cleanup"); client.Code(err) != "forbidden" {
		t.Fatalf("producer delete while auth.producer_delete is off: %v, want forbidden", err)
	}
	// The CLI, with the admin token.
	environ := []string{"ARTIFACTSTORE_URL=" + env.url, "ARTIFACTSTORE_TOKEN=" + env.token}
	if code, _, stderr := runCLIEnv(t, environ, "delete", "x@1"); code == 0 || !strings.Contains(stderr, "reason") {
		t.Fatalf("delete without --reason: exit %d, %s", code, stderr)
	}
	if code, _, stderr := runCLIEnv(t, environ, "delete", "--reason", "r", "x"); code != 2 {
		t.Fatalf("delete x (no @version): exit %d, %s", code, stderr)
	}
	code, out, stderr := runCLIEnv(t, environ, "delete", "--reason", "test cleanup", "x@1")
	if code != 0 || !strings.Contains(out, "deleted x@1") {
		t.Fatalf("delete x@1: exit %d, %s %s", code, out, stderr)
	}
	if code, _, _ := runCLIEnv(t, environ, "delete", "--reason", "again", "x@1"); code != 1 {
		t.Fatalf("deleting a missing package: exit %d, want 1", code)
	}
}

// retentionFixture publishes 10 versions of 5 names in class "ci": every
// file set shares one file across all names, one per name across its
// versions, and has one file of its own. It returns the content of each
// version by name.
func retentionFixture(t *testing.T, c *client.Client) (shared []byte, perName map[string][]byte, own map[string][]byte) {
	shared = randBytes(1000, 4096)
	perName, own = map[string][]byte{}, map[string][]byte{}
	for n := 0; n < 5; n++ {
		name := fmt.Sprintf("svc-%d", n)
		perName[name] = randBytes(uint64(2000+n), 2048)
		for v := 1; v <= 10; v++ {
			key := fmt.Sprintf("%s@%d", name, v)
			own[key] = randBytes(uint64(3000+n*100+v), 1000+n*10+v)
			files := map[string][]byte{"shared.bin": shared, "name.bin": perName[name], "own.bin": own[key]}
			publish(t, c, manifestOf(name, fmt.Sprint(v), "ci", "ci", files), files)
		}
	}
	return shared, perName, own
}

func checkKeepLast3(t *testing.T, env *testEnv, backendID string, shared []byte, perName, own map[string][]byte) {
	t.Helper()
	ctx := ctxT(t)
	objs := objectsOn(t, env.svc.Backends[backendID])
	for n := 0; n < 5; n++ {
		name := fmt.Sprintf("svc-%d", n)
		vs, _, err := env.c.Versions(ctx, name, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, v := range vs {
			got = append(got, v.Version)
		}
		if strings.Join(got, ",") != "10,9,8" {
			t.Errorf("%s keeps versions %v, want exactly the 3 newest 10,9,8", name, got)
		}
		if _, ok := objs[shaDigest(perName[name])]; !ok {
			t.Errorf("%s: content shared by its versions is gone from %s", name, backendID)
		}
		for v := 1; v <= 10; v++ {
			_, stored := objs[shaDigest(own[fmt.Sprintf("%s@%d", name, v)])]
			if v >= 8 && !stored {
				t.Errorf("%s@%d: kept version's content missing from %s", name, v, backendID)
			}
			if v < 8 && stored {
				t.Errorf("%s@%d: deleted version's content still in %s (listed from the backend)", name, v, backendID)
			}
		}
		for v := 8; v <= 10; v++ {
			for path, want := range map[string][]byte{"shared.bin": shared, "name.bin": perName[name], "own.bin": own[fmt.Sprintf("%s@%d", name, v)]} {
				if _, body := get(t, env.c, client.FilePath(name, fmt.Sprint(v), path), nil); !bytes.Equal(body, want) {
					t.Errorf("%s@%d %s does not read back byte-exact", name, v, path)
				}
			}
		}
	}
	if _, ok := objs[shaDigest(shared)]; !ok {
		t.Errorf("content shared by every name is gone from %s", backendID)
	}
	// + svc-0@1's own content, which the never-delete class's packages use.
	if len(objs) != 1+5+15+1 {
		t.Errorf("%s holds %d objects, want 22 (1 shared + 5 per name + 15 own + 1 kept by class release)", backendID, len(objs))
	}
	assertConsistent(t, env.svc)
}

const keepLast3 = `retention:
  classes:
    ci:
      keep_last: 3
    release:
      never_delete: true
`

// TestRetentionKeepLast3 is the acceptance test: keep-last-3 over 10
// versions of 5 names sharing content, on the local backend and on each
// real S3 server, checked by listing each backend.
func TestRetentionKeepLast3(t *testing.T) {
	type target struct {
		name, yaml string
	}
	targets := []target{{"local", "data_dir: @DIR@/data\n" + keepLast3}}
	for _, srv := range s3test.Servers(t) {
		targets = append(targets, target{srv.Name, "data_dir: @DIR@/data\n" + keepLast3 + "backends:\n" +
			s3BackendYAML(srv.Name, srv.NewBucket(t)) + "routing:\n  default: " + srv.Name + "\n"})
	}
	for _, tg := range targets {
		t.Run(tg.name, func(t *testing.T) {
			env := startService(t, tg.yaml)
			shared, perName, own := retentionFixture(t, env.c)
			// A never-delete class is untouched.
			keep := map[string][]byte{"own.bin": own["svc-0@1"]}
			for v := 1; v <= 5; v++ {
				publish(t, env.c, manifestOf("rel", fmt.Sprint(v), "ci", "release", keep), keep)
			}
			// A dry run reports, per backend, exactly the content only the
			// doomed versions use, and changes nothing.
			before := objectsOn(t, env.svc.Backends[tg.name])
			dry, err := env.svc.Lifecycle.ApplyRetention(ctxT(t), true)
			if err != nil {
				t.Fatal(err)
			}
			var wantBytes int64
			for key, b := range own {
				var v int
				fmt.Sscanf(key[strings.Index(key, "@")+1:], "%d", &v)
				if v < 8 && key != "svc-0@1" { // svc-0@1's content is shared with rel@*
					wantBytes += int64(len(b))
				}
			}
			if len(dry.Deleted) != 35 || dry.Freed[tg.name].Objects != 34 || dry.Freed[tg.name].Bytes != wantBytes {
				t.Fatalf("dry run: %d deletes, freed %+v; want 35 deletes freeing 34 objects, %d bytes", len(dry.Deleted), dry.Freed, wantBytes)
			}
			if after := objectsOn(t, env.svc.Backends[tg.name]); len(after) != len(before) {
				t.Fatalf("a dry run changed the backend: %d -> %d objects", len(before), len(after))
			}
			rep, err := env.svc.Lifecycle.ApplyRetention(ctxT(t), false)
			if err != nil {
				t.Fatal(err)
			}
			if rep.DeletedCount != 35 || rep.GC == nil || rep.GC.Backends[tg.name].Objects != 34 {
				t.Fatalf("retention: %d deleted, gc %+v", rep.DeletedCount, rep.GC)
			}
			// svc-0@1's own content is kept by rel@*; account for it.
			delete(own, "svc-0@1")
			checkKeepLast3(t, env, tg.name, shared, perName, own)
			if vs, _, _ := env.c.Versions(ctxT(t), "rel", "", 10); len(vs) != 5 {
				t.Errorf("never_delete class lost versions: %d left", len(vs))
			}
			// Applying again deletes nothing more.
			again, err := env.svc.Lifecycle.ApplyRetention(ctxT(t), false)
			if err != nil || again.DeletedCount != 0 {
				t.Fatalf("second apply: %v, %d deleted", err, again.DeletedCount)
			}
		})
	}
}

// TestRetentionCLI runs `retention apply --dry-run` and `retention apply`
// and `gc` through the command line against a stopped service (in
// process) and checks what they print.
func TestRetentionCLI(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgFile, []byte("data_dir: "+dir+"/data\n"+`retention:
  classes:
    ci:
      keep_last: 1
`), 0o600)
	env := startServiceFile(t, cfgFile, nil)
	a := map[string][]byte{"f": []byte("version one")}
	b := map[string][]byte{"f": []byte("version two")}
	publish(t, env.c, manifestOf("n", "1", "ci", "ci", a), a)
	publish(t, env.c, manifestOf("n", "2", "ci", "ci", b), b)
	env.stop()
	code, out, stderr := runCLIEnv(t, nil, "--config", cfgFile, "retention", "apply", "--dry-run")
	if code != 0 || !strings.Contains(out, "would delete n@1") || !strings.Contains(out, "local") || !strings.Contains(out, fmt.Sprint(len("version one"))) {
		t.Fatalf("retention apply --dry-run: exit %d\n%s\n%s", code, out, stderr)
	}
	code, out, stderr = runCLIEnv(t, nil, "--config", cfgFile, "retention", "apply")
	if code != 0 || !strings.Contains(out, "deleted n@1") || !strings.Contains(out, "1 packages deleted") {
		t.Fatalf("retention apply: exit %d\n%s\n%s", code, out, stderr)
	}
	code, out, stderr = runCLIEnv(t, nil, "--config", cfgFile, "gc", "--dry-run", "--json")
	var rep lifecycle.GCReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Backends["local"].Objects != 0 {
		t.Fatalf("gc --dry-run after retention: exit %d\n%s\n%s", code, out, stderr)
	}
}

// TestGCLeavesStagedAndCountedOnContent: content an open upload session
// stages or counts on as already stored is never collected, even when no
// package references it.
func TestGCLeavesStagedAndCountedOnContent(t *testing.T) {
	env := startService(t, "data_dir: @DIR@/data\n")
	ctx := ctxT(t)
	old := map[string][]byte{"f": randBytes(7, 500)}
	publish(t, env.c, manifestOf("old", "1", "ci", "nightly", old), old)
	// A new session counts on the stored copy (nothing to upload)...
	m := manifestOf("new", "1", "ci", "nightly", old)
	br, err := env.c.Begin(ctx, m)
	if err != nil || len(br.Needed) != 0 {
		t.Fatalf("begin: %v %+v", err, br)
	}
	// ... while the only package using it is deleted and gc runs.
	if _, err := env.c.Delete(ctx, "old", "1", "test"); err != nil {
		t.Fatal(err)
	}
	rep, err := env.svc.Lifecycle.GC(ctx, lifecycle.GCOptions{})
	if err != nil || rep.Backends["local"].Objects != 0 {
		t.Fatalf("gc took content an open session counts on: %v %+v", err, rep.Backends["local"])
	}
	if _, _, err := env.c.Commit(ctx, br.UploadID); err != nil {
		t.Fatalf("commit after gc: %v", err)
	}
	if _, body := get(t, env.c, client.FilePath("new", "1", "f"), nil); !bytes.Equal(body, old["f"]) {
		t.Fatal("committed package does not read back")
	}
	// A staged (uploaded, uncommitted) object is not collected either.
	staged := map[string][]byte{"g": randBytes(8, 700)}
	br, err = env.c.Begin(ctx, manifestOf("st", "1", "ci", "nightly", staged))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.c.Upload(ctx, br.UploadID, sha(staged["g"]), 700, bytes.NewReader(staged["g"])); err != nil {
		t.Fatal(err)
	}
	if _, err := env.svc.Lifecycle.GC(ctx, lifecycle.GCOptions{Orphans: true}); err != nil {
		t.Fatal(err)
	}
	if _, ok := objectsOn(t, env.svc.Backends["local"])[shaDigest(staged["g"])]; !ok {
		t.Fatal("gc deleted an object an open session staged")
	}
	if _, _, err := env.c.Commit(ctx, br.UploadID); err != nil {
		t.Fatalf("commit of the staged object after gc: %v", err)
	}
	assertConsistent(t, env.svc)
}

// TestGCOrphansAfterGrace: an object the registry does not know is
// deleted only by `gc --orphans` and only once gc has seen it for the
// grace period.
func TestGCOrphansAfterGrace(t *testing.T) {
	env := startService(t, "data_dir: @DIR@/data\ngc:\n  orphan_grace: 1h\n")
	ctx := ctxT(t)
	b := env.svc.Backends["local"]
	orphan := randBytes(9, 321)
	d, _ := digest.Parse(shaDigest(orphan))
	if err := b.Put(ctx, d, int64(len(orphan)), bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"k": []byte("kept")}
	publish(t, env.c, manifestOf("k", "1", "ci", "nightly", files), files)
	now := time.Now()
	clock := func() time.Time { return now }
	m := lifecycle.New(env.svc.Store, env.svc.Backends, env.svc.Registry, lifecycle.Options{OrphanGrace: time.Hour, Now: clock})
	if _, err := m.GC(ctx, lifecycle.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	rep, err := m.GC(ctx, lifecycle.GCOptions{Orphans: true})
	if err != nil || rep.Backends["local"].OrphansFound != 1 || rep.Backends["local"].OrphansWaiting != 1 {
		t.Fatalf("first orphan pass: %v %+v", err, rep.Backends["local"])
	}
	now = now.Add(59 * time.Minute)
	if _, err := m.GC(ctx, lifecycle.GCOptions{Orphans: true}); err != nil {
		t.Fatal(err)
	}
	if _, ok := objectsOn(t, b)[d.String()]; !ok {
		t.Fatal("orphan deleted within its grace period")
	}
	now = now.Add(2 * time.Minute)
	if _, err := m.GC(ctx, lifecycle.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := objectsOn(t, b)[d.String()]; !ok {
		t.Fatal("orphan deleted without --orphans")
	}
	rep, err = m.GC(ctx, lifecycle.GCOptions{Orphans: true})
	if err != nil || rep.Backends["local"].OrphansDeleted != 1 {
		t.Fatalf("orphan pass after the grace period: %v %+v", err, rep.Backends["local"])
	}
	if _, ok := objectsOn(t, b)[d.String()]; ok {
		t.Fatal("orphan still stored after the grace period with --orphans")
	}
	assertConsistent(t, env.svc)
}

// TestEventPruning: after the retention age passes (an injected clock),
// old events are gone and a consumer asking for them gets the documented
// error naming the oldest available sequence.
func TestEventPruning(t *testing.T) {
	env := startService(t, "data_dir: @DIR@/data\nevents:\n  max_age: 720h\n  verification_max_age: 72h\n")
	ctx := ctxT(t)
	files := map[string][]byte{"a": randBytes(11, 100)}
	publish(t, env.c, manifestOf("e", "1", "ci", "nightly", files), files)
	if _, err := env.svc.Verify.Run(ctx, "local", store.ModeQuick, verify.Hooks{}); err != nil {
		t.Fatal(err)
	}
	evs, _ := env.c.Events(ctx, 0, 100)
	if len(evs) != 3 { // location_created, package.created, location_verified
		t.Fatalf("events before pruning: %d", len(evs))
	}
	prune := func(after time.Duration, floor uint64) *lifecycle.PruneReport {
		m := lifecycle.New(env.svc.Store, env.svc.Backends, env.svc.Registry, lifecycle.Options{
			Now:    func() time.Time { return time.Now().Add(after) },
			Events: env.svc.Config.eventPolicy(),
			EventFloor: func(context.Context) (uint64, error) {
				return floor, nil
			},
		})
		rep, err := m.PruneEvents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	// Four days on: only the verification event is past its age.
	if rep := prune(96*time.Hour, 0); rep.Deleted != 1 || rep.Horizon != 1 {
		t.Fatalf("prune at +4d: %+v", rep)
	}
	evs, err := env.c.Events(ctx, 0, 100)
	// location_created, package.created and the pruning run's summary.
	if err != nil || len(evs) != 3 || evs[1].Type != store.EventPackageCreated || evs[2].Type != lifecycle.EventEventsPruned {
		t.Fatalf("events after pruning verification: %v %+v", err, evs)
	}
	// 31 days on, but a consumer (a webhook subscription) still needs seq
	// 2: only seq 1 goes.
	if rep := prune(31*24*time.Hour, 2); rep.Deleted != 1 || rep.Horizon != 2 {
		t.Fatalf("prune at +31d with floor 2: %+v", rep)
	}
	// Without the floor everything older than 30 days goes.
	rep := prune(31*24*time.Hour, 0)
	if rep.Deleted != 1 {
		t.Fatalf("prune at +31d: %+v", rep)
	}
	_, err = env.c.Events(ctx, 0, 100)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusGone || ce.Code != "events_pruned" ||
		!strings.Contains(ce.Message, fmt.Sprintf("the oldest available is seq %d", rep.Horizon)) {
		t.Fatalf("GET /v1/events?after=0 after pruning: %v, want 410 events_pruned naming seq %d", err, rep.Horizon)
	}
	// Resuming from the horizon works.
	if _, err := env.c.Events(ctx, rep.Horizon-1, 100); err != nil {
		t.Fatalf("events from the horizon: %v", err)
	}
}

// fileDigest hashes a file (byte-exact checks).
func fileDigest(t testing.TB, r io.Reader) string {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
