package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/lifecycle"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// crashTrials runs kill -9 trials of gc and retention against the backend
// the config routes to. Each trial publishes two versions of a new name
// (sharing one content with every other trial), then a child process
// deletes the older version (retention keep_last 1, or a delete followed
// by gc) and is killed at a random step. After the restart: db check
// passes, every package reads back byte-exact, and a second gc frees what
// the killed one did not, leaving the backend holding exactly what the
// registry locates.
func crashTrials(t *testing.T, cfgFile, backendID string, trials int) {
	bin := buildBinary(t)
	cfg, err := LoadConfig(LoadOptions{File: cfgFile})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
	ctx := ctxT(t)
	shared := randBytes(77, 1500)
	kept := map[string]map[string][]byte{} // name -> files of its kept version
	doomed := map[string]map[string][]byte{}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	killed := map[string]int{}
	spec := ""
	// One service open per trial: check the previous trial, set up the
	// next, close, let the child run and die.
	for i := 0; i <= trials; i++ {
		svc, err := NewService(ctx, cfg, log)
		if err != nil {
			t.Fatalf("trial %d: open: %v", i, err)
		}
		if i > 0 {
			checkCrashTrial(t, svc, backendID, i-1, spec, kept, doomed, r)
		}
		if i == trials {
			rep, err := svc.Verify.Run(ctx, backendID, store.ModeDeep, verify.Hooks{})
			if err != nil || rep.ByVerdict[store.StatusVerified] != rep.Checked || rep.Checked != trials+1 {
				t.Fatalf("deep verification after the trials: %v %+v", err, rep.RunSummary)
			}
			svc.Close()
			break
		}
		name := fmt.Sprintf("crash-%d", i)
		v1 := map[string][]byte{"s.bin": shared, "u.bin": randBytes(uint64(i*4+1), 900), "w.bin": randBytes(uint64(i*4+2), 400)}
		v2 := map[string][]byte{"s.bin": shared, "u.bin": randBytes(uint64(i*4+3), 800)}
		for v, files := range []map[string][]byte{v1, v2} {
			if _, err := regPublishClass(ctx, svc, name, fmt.Sprint(v+1), "ci", files); err != nil {
				t.Fatalf("trial %d: publish: %v", i, err)
			}
		}
		kept[name], doomed[name] = v2, v1
		// retention: 1 delete batch, 1 condemn, 2 x (deleting, deleted), 1
		// intents dropped = 7 steps; gc after a delete: 6.
		job, steps, args := "retention", 7, []string{"--config", cfgFile, "retention", "apply"}
		if i%2 == 1 {
			job, steps, args = "gc", 6, []string{"--config", cfgFile, "gc"}
			if _, err := svc.Lifecycle.DeletePackage(ctx, name, "1", store.Deletion{Reason: "crash trial", By: "test"}); err != nil {
				t.Fatal(err)
			}
		}
		svc.Close()

		killAt := 1 + r.IntN(steps)
		spec = fmt.Sprintf("%s killed at step %d", job, killAt)
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", killAtEnv, killAt))
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL:
			killed[job]++
		case err == nil:
			// finished before its step (cannot happen with the counts above)
		default:
			t.Fatalf("trial %d: child failed: %v\n%s", i, err, out)
		}
	}
	t.Logf("%d trials on %s: killed %d retention runs and %d gc runs", trials, backendID, killed["retention"], killed["gc"])
	if killed["retention"]+killed["gc"] != trials {
		t.Fatalf("only %d of %d children were killed", killed["retention"]+killed["gc"], trials)
	}
}

// checkCrashTrial checks the store after trial i's child was killed.
func checkCrashTrial(t *testing.T, svc *Service, backendID string, i int, spec string, kept, doomed map[string]map[string][]byte, r *rand.Rand) {
	t.Helper()
	ctx := ctxT(t)
	name := fmt.Sprintf("crash-%d", i)
	problems, err := svc.Store.Check(ctx, svc.Registry.BackendIDs(), 10)
	if err != nil || len(problems) > 0 {
		t.Fatalf("trial %d (%s): db check: %v %v", i, spec, err, problems)
	}
	// Every package reads back: this trial's, and an earlier one.
	for _, n := range []string{name, fmt.Sprintf("crash-%d", r.IntN(i+1))} {
		if err := readsBack(ctx, svc.Registry, n, "2", kept[n]); err != nil {
			t.Fatalf("trial %d (%s): %v", i, spec, err)
		}
	}
	if _, err := svc.Store.GetPackage(ctx, name, "1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("trial %d (%s): the deleted version is back: %v", i, spec, err)
	}
	// A second gc frees what the killed one did not.
	if _, err := svc.Lifecycle.GC(ctx, lifecycle.GCOptions{}); err != nil {
		t.Fatalf("trial %d: second gc: %v", i, err)
	}
	objs := objectsOn(t, svc.Backends[backendID])
	for _, p := range []string{"u.bin", "w.bin"} {
		if _, ok := objs[shaDigest(doomed[name][p])]; ok {
			t.Fatalf("trial %d (%s): content of the deleted version still stored after the second gc", i, spec)
		}
	}
	if pending, _ := svc.Store.PendingIntents(ctx); len(pending) != 0 {
		t.Fatalf("trial %d: %d delete intents left after the second gc", i, len(pending))
	}
	assertConsistent(t, svc)
}

// regPublishClass publishes through the service's registry.
func regPublishClass(ctx context.Context, svc *Service, name, version, class string, files map[string][]byte) (bool, error) {
	return regPublishAs(ctx, svc.Registry, name, version, class, files)
}

const crashRetention = `retention:
  classes:
    ci:
      keep_last: 1
`

// crashChains splits the trials of one backend into chains that run at
// the same time, each with its own data directory (and bucket): a trial
// waits mostly on process start-up, not on the CPU. (A failure in a chain
// marks the test failed and ends that chain; the deferred Done lets the
// others finish.)
const crashChains = 4

func runChains(t *testing.T, cfgYAML func(dir string) string, backendID string) {
	var wg sync.WaitGroup
	for c := 0; c < crashChains; c++ {
		dir := fastTempDir(t)
		cfgFile := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(cfgFile, []byte(cfgYAML(dir)), 0o600); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			crashTrials(t, cfgFile, backendID, 100/crashChains)
		}()
	}
	wg.Wait()
}

// TestKillDuringLifecycleLocal: 100 kill -9 trials during gc and
// retention on the local backend.
func TestKillDuringLifecycleLocal(t *testing.T) {
	t.Parallel()
	runChains(t, func(dir string) string { return "data_dir: " + dir + "/data\n" + crashRetention }, "local")
}

// TestKillDuringLifecycleRGW: 100 kill -9 trials during gc and retention
// on Ceph RGW.
func TestKillDuringLifecycleRGW(t *testing.T) {
	t.Parallel()
	var rgw *s3test.Server
	for _, srv := range s3test.Servers(t) {
		if srv.Name == "ceph" {
			rgw = &srv
		}
	}
	if rgw == nil {
		if os.Getenv("CI") != "" {
			t.Fatal("Ceph RGW is not among the test S3 servers")
		}
		t.Skip("Ceph RGW is not running (make s3-up)")
	}
	runChains(t, func(dir string) string {
		return "data_dir: " + dir + "/data\n" + crashRetention + "backends:\n" +
			s3BackendYAML("rgw", rgw.NewBucket(t)) + "routing:\n  default: rgw\n"
	}, "rgw")
}
