package app

import (
	"regexp"
	"strings"
	"testing"

	"artifactstore/internal/digest"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// TestUIIntegrityStates: the interface shows what verification and repair
// (issue 12) did to a package's copies. Verified copies show as verified; a
// flipped byte found by a deep run shows as a failed copy in the packages
// list, as a mismatch with its error on the version page (the file has no
// readable copy, so no download link), on the health page with a link to
// the package, and as a failed event; republishing repairs it: the copy is
// stored again, "repaired 1 time", the failure is gone from the list and
// the health page, and the repair is in the event log under its type.
func TestUIIntegrityStates(t *testing.T) {
	env := startService(t, uiConfig)
	bad, good := randBytes(41, 70_000), []byte("# notes\n")
	files := map[string][]byte{"bin/tool": bad, "NOTES.md": good}
	publishUI(t, env.c, "integ", "1.0", "ci", "release", map[string]string{"team": "storage"}, files)
	publishUI(t, env.c, "bystander", "2.0", "ci", "release", nil, map[string][]byte{"x": []byte("x\n")})
	b := newUIBrowser(t, env.url)
	b.login(env.token)
	deep := func() {
		t.Helper()
		if _, err := env.svc.Verify.Run(ctxT(t), "local", store.ModeDeep, verify.Hooks{}); err != nil {
			t.Fatalf("deep verify: %v", err)
		}
	}
	page := func(path string) string {
		t.Helper()
		resp, body := b.do("GET", path, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return body
	}
	// row returns the packages-list row of name.
	row := func(list, name string) string {
		t.Helper()
		m := regexp.MustCompile(`(?s)<tr[^>]*>\s*<td><a class="strong" href="/ui/packages/` + name + `">.*?</tr>`).FindString(list)
		if m == "" {
			t.Fatalf("no row for %s in\n%s", name, list)
		}
		return m
	}
	badSHA := "sha256:" + sha(bad)

	deep()
	if r := row(page("/ui/"), "integ"); !strings.Contains(r, `<span class="badge ok">verified</span>`) || strings.Contains(r, "failed") {
		t.Fatalf("after a clean deep run the row says %s", r)
	}
	if v := page("/ui/packages/integ/1.0"); strings.Count(v, `<span class="badge ok">verified</span>`) < 2 {
		t.Fatalf("version page after a clean deep run:\n%s", v)
	}

	d, err := digest.Parse(badSHA)
	if err != nil {
		t.Fatal(err)
	}
	localCorrupter(env.svc.Config.Backends["local"].Path).flip(t, d)
	deep()
	if r := row(page("/ui/"), "integ"); !strings.Contains(r, `<span class="badge bad" title="a copy failed verification">1 failed</span>`) {
		t.Fatalf("the failed copy is not in the packages row: %s", r)
	}
	if r := row(page("/ui/"), "bystander"); strings.Contains(r, "failed") {
		t.Fatalf("another package shows a failure: %s", r)
	}
	v := page("/ui/packages/integ/1.0")
	if !strings.Contains(v, `<span class="badge bad">mismatch</span><div class="sub error-text">`) {
		t.Fatalf("version page does not show the mismatch with its error:\n%s", v)
	}
	if !strings.Contains(v, `tool <span class="muted small">(no readable copy)</span>`) || strings.Contains(v, `href="/ui/packages/integ/1.0/files/bin/tool"`) {
		t.Fatalf("a file without a readable copy still has a download link:\n%s", v)
	}
	if !strings.Contains(v, `href="/ui/packages/integ/1.0/files/NOTES.md"`) {
		t.Fatalf("the good file lost its download link:\n%s", v)
	}
	h := page("/ui/health")
	if !strings.Contains(h, `title="`+badSHA+`"`) || !strings.Contains(h, `<a href="/ui/packages/integ/1.0">integ@1.0</a>`) || !strings.Contains(h, "1 in all") {
		t.Fatalf("health page does not list the failed location with its package:\n%s", h)
	}
	if !strings.Contains(h, "Failed locations are never served; republish the packages holding their content") || strings.Contains(h, "<h2>action</h2>") {
		t.Fatalf("health page does not give the document's advice as a sentence:\n%s", h)
	}
	if ev := page("/ui/events?type=" + store.EventLocationFailed); !strings.Contains(ev, `<tr class="row-bad">`) || !strings.Contains(ev, `title="`+badSHA+`"`) {
		t.Fatalf("failed event not shown as bad:\n%s", ev)
	}

	// Republish: the copy is rewritten from verified bytes.
	if _, br, created := publish(t, env.c, manifestOf("integ", "1.0", "ci", "release", files), files); created || !br.Repair {
		t.Fatalf("republish: created %v, begin %+v", created, br)
	}
	v = page("/ui/packages/integ/1.0")
	if strings.Contains(v, "mismatch") || !strings.Contains(v, `<span class="badge neutral">stored</span><div class="sub">repaired 1 time</div>`) {
		t.Fatalf("version page after the repair:\n%s", v)
	}
	if !strings.Contains(v, `href="/ui/packages/integ/1.0/files/bin/tool"`) {
		t.Fatalf("the repaired file has no download link:\n%s", v)
	}
	if r := row(page("/ui/"), "integ"); strings.Contains(r, "failed") || !strings.Contains(r, `>stored</span>`) {
		t.Fatalf("packages row after the repair: %s", r)
	}
	if h := page("/ui/health"); !strings.Contains(h, "No copy has failed verification.") || strings.Contains(h, badSHA) {
		t.Fatalf("health page after the repair:\n%s", h)
	}
	if ev := page("/ui/events"); !strings.Contains(ev, `<option value="`+store.EventLocationRepaired+`">`) {
		t.Fatalf("the repaired type is not offered in the filter:\n%s", ev)
	}
	ev := page("/ui/events?type=" + store.EventLocationRepaired)
	if !strings.Contains(ev, `<span class="etype">`+store.EventLocationRepaired+`</span>`) || !strings.Contains(ev, `title="`+badSHA+`"`) ||
		!strings.Contains(ev, `<span class="k">previous_status</span> mismatch`) || strings.Contains(ev, `row-bad`) {
		t.Fatalf("the repair is not in the event log as it happened:\n%s", ev)
	}
}
