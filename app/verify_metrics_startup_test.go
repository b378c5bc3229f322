package app

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"artifactstore/store"
)

// TestVerificationMetricsFromStartup: the overrun counter and the
// last-success gauge exist from start-up for every backend and mode, at 0
// on a fresh database and restored from it after a restart, so alert rules
// see them before the next run.
func TestVerificationMetricsFromStartup(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgFile, []byte(strings.ReplaceAll(localConfig, "@DIR@", dir)+verifyTestConfig), 0o600)
	sample := func(env *testEnv, series string) string {
		t.Helper()
		_, body := get(t, env.c, "/metrics", nil)
		m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
		if m == nil {
			t.Fatalf("no sample %s in the scrape", series)
		}
		return string(m[1])
	}
	overruns := func(mode string) string {
		return `artifactstore_verification_overruns_total{backend="local",mode="` + mode + `"}`
	}
	lastSuccess := func(mode string) string {
		return `artifactstore_verification_last_success_timestamp_seconds{backend="local",mode="` + mode + `"}`
	}

	env := startServiceFile(t, cfgFile, nil)
	for _, mode := range []string{store.ModeDeep, store.ModeQuick} {
		if v := sample(env, overruns(mode)); v != "0" {
			t.Errorf("fresh start: %s = %s, want 0", overruns(mode), v)
		}
		if v := sample(env, lastSuccess(mode)); v != "0" {
			t.Errorf("fresh start: %s = %s, want 0", lastSuccess(mode), v)
		}
	}
	// What the scheduler and a finished run persist, then a restart.
	at := time.Unix(1790000000, 0)
	err := env.svc.Store.UpdateVerifyState(ctxT(t), "local", store.ModeDeep, func(st *store.VerifyState) {
		st.Overruns = 3
		st.LastSuccessAt = &at
	})
	if err != nil {
		t.Fatal(err)
	}
	env.stop()
	env = startServiceFile(t, cfgFile, nil)
	if v := sample(env, overruns(store.ModeDeep)); v != "3" {
		t.Errorf("after restart: %s = %s, want 3", overruns(store.ModeDeep), v)
	}
	if v := sample(env, lastSuccess(store.ModeDeep)); v != "1.79e+09" {
		t.Errorf("after restart: %s = %s, want 1.79e+09", lastSuccess(store.ModeDeep), v)
	}
	if v := sample(env, overruns(store.ModeQuick)); v != "0" {
		t.Errorf("after restart: %s = %s, want 0", overruns(store.ModeQuick), v)
	}
}
