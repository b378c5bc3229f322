package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"artifactstore/internal/digest"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

// chromiumPath finds Debian's Chromium (scripts/browser-up.sh installs it;
// ARTIFACTSTORE_CHROMIUM overrides). Without it the browser tests fail in
// CI and skip elsewhere.
func chromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("ARTIFACTSTORE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH: run scripts/browser-up.sh (make test does)")
	}
	t.Skip("no chromium on PATH (scripts/browser-up.sh installs it)")
	return ""
}

// newChromium starts a headless Chromium with a fresh profile and returns
// a tab's context.
func newChromium(t testing.TB) context.Context {
	t.Helper()
	path := chromiumPath(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("password-store", "basic"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelT(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // start the browser
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	return ctx
}

// screenshots keeps the pictures of the pages: in docs/ui when
// ARTIFACTSTORE_UI_SCREENSHOTS names that directory (make screenshots),
// else in a temporary directory.
type screenshots struct {
	t   testing.TB
	ctx context.Context
	dir string
}

func (s screenshots) take(name string) {
	s.t.Helper()
	// Wait for the web fonts and layout to settle.
	if err := chromedp.Do(s.ctx, chromedp.Evaluate[chromedp.Void](`document.fonts.ready`)); err != nil {
		s.t.Fatal(err)
	}
	buf, err := chromedp.Run(s.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		s.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, name+".png"), buf, 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// TestUIBrowser drives headless Chromium through the interface: log in
// with a token, search by label, open the package, download a file and
// check its digest, find the location that verification failed on the
// health page and follow its link to the package, watch a new event arrive
// live, create a token, log out and be sent to the login page.
func TestUIBrowser(t *testing.T) {
	ctx := newChromium(t)
	env := startService(t, uiConfig)
	tool := randBytes(21, 300_000)
	publishUI(t, env.c, "api-server", "2.0.0", "ci", "release", map[string]string{"git.sha": "5e1f0a2", "team": "platform"},
		map[string][]byte{"bin/api-server": randBytes(22, 180_000), "config/default.yaml": []byte("listen: :8080\n")})
	publishUI(t, env.c, "web-frontend", "1.3.0", "ci", "release", map[string]string{"git.sha": "a41c9e0", "team": "web"},
		map[string][]byte{"dist/app.js": randBytes(23, 120_000), "dist/index.html": []byte("<!doctype html><title>app</title>\n")})
	publishUI(t, env.c, "etl-jobs", "0.9.1", "alice", "nightly", map[string]string{"team": "data"},
		map[string][]byte{"jobs/daily.py": []byte("print('daily')\n"), "README.md": []byte("# ETL jobs\n")})
	files := map[string][]byte{"bin/app.tar.gz": tool, "dist/app.js": randBytes(24, 150_000), "dist/app.css": randBytes(25, 24_000),
		"dist/index.html": []byte("<!doctype html><title>app</title>\n"), "README.md": []byte("# web-frontend\n")}
	publishUI(t, env.c, "web-frontend", "1.4.0", "ci", "release", map[string]string{"git.sha": "feed42c", "team": "web"}, files)
	publishUI(t, env.c, "docs-site", "2026.11.27", "ci", "docs", map[string]string{"team": "web"},
		map[string][]byte{"site.tar.gz": randBytes(26, 60_000)})

	shotDir := os.Getenv("ARTIFACTSTORE_UI_SCREENSHOTS")
	if shotDir == "" {
		shotDir = t.TempDir()
	}
	shots := screenshots{t: t, ctx: ctx, dir: shotDir}
	base := env.url
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		must("location", err)
		return strings.TrimPrefix(loc, base)
	}
	// click follows a link or submits a form and waits for the next page.
	click := func(sel string) {
		t.Helper()
		resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
		must("click "+sel, err)
		if resp.Status != 200 {
			t.Fatalf("click %s: page answered %d", sel, resp.Status)
		}
	}
	texts := func(sel string) []string {
		t.Helper()
		out, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](fmt.Sprintf(`[...document.querySelectorAll(%q)].map(e => e.innerText)`, sel)))
		must("read "+sel, err)
		return out
	}

	// Not logged in: the interface sends the browser to the login page.
	must("open /", chromedp.Do(ctx, chromedp.Navigate(base+"/")))
	if loc := location(); !strings.HasPrefix(loc, "/ui/login") {
		t.Fatalf("/ without a session ends at %s, want the login page", loc)
	}
	shots.take("login")
	must("type the token", chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("token"), env.token)))
	click(`form[action="/ui/login"] button[type=submit]`)
	if loc := location(); loc != "/ui/" {
		t.Fatalf("after login at %s, want /ui/", loc)
	}
	if rows := texts("table.list tbody tr"); len(rows) != 4 || !strings.HasPrefix(rows[0], "docs-site") {
		t.Fatalf("packages page rows (newest first): %q", rows)
	}
	shots.take("packages")

	// Search by label: only the package with that label, at that version.
	must("type the label", chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("label"), "git.sha=a41c9e0")))
	click(`form.search button[type=submit]`)
	rows := texts("table.list tbody tr")
	if len(rows) != 1 || !strings.Contains(rows[0], "web-frontend") || !strings.Contains(rows[0], "matched 1.3.0") {
		t.Fatalf("label search rows: %q", rows)
	}
	click(`table.list a[href="/ui/packages/web-frontend/1.4.0"]`)
	if loc := location(); loc != "/ui/packages/web-frontend/1.4.0" {
		t.Fatalf("opened %s", loc)
	}
	shots.take("version")

	// Download a file through the page and compare its digest with the one
	// the page shows and the one published.
	dl := t.TempDir()
	_, err := chromedp.CallBrowser(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
		Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dl})
	must("allow downloads", err)
	link := `a[href="/ui/packages/web-frontend/1.4.0/files/bin/app.tar.gz"]`
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).closest("li").querySelector("code.digest").innerText`, link)))
	must("read the digest", err)
	want := "sha256:" + sha(tool)
	if shown != want {
		t.Fatalf("the page shows digest %q for bin/app.tar.gz, want %q", shown, want)
	}
	must("click the download", chromedp.Do(ctx, chromedp.Click(chromedp.CSS(link))))
	got := waitDownload(t, filepath.Join(dl, "app.tar.gz"), int64(len(tool)))
	sum := sha256.Sum256(got)
	if "sha256:"+hex.EncodeToString(sum[:]) != shown {
		t.Fatalf("downloaded file hashes to %x, the page says %s", sum, shown)
	}

	// Flip a byte behind the service's back; a deep verification finds it;
	// the health page lists the failed location with a link to its package.
	d, _ := digest.Parse(want)
	localCorrupter(env.svc.Config.Backends["local"].Path).flip(t, d)
	rep, err := env.svc.Verify.Run(ctxT(t), "local", store.ModeDeep, verify.Hooks{})
	must("verify", err)
	if rep.ByVerdict[store.StatusMismatch] != 1 {
		t.Fatalf("verification verdicts: %v", rep.ByVerdict)
	}
	click(`nav a[href="/ui/health"]`)
	bad := texts("tr.row-bad")
	if len(bad) != 1 || !strings.Contains(bad[0], "mismatch") || !strings.Contains(bad[0], "web-frontend@1.4.0") || !strings.Contains(bad[0], d.Hex[:12]) {
		t.Fatalf("failed locations on the health page: %q", bad)
	}
	shots.take("health")
	click(`tr.row-bad a[href="/ui/packages/web-frontend/1.4.0"]`)
	if st := texts("tr.row-bad td:nth-child(3) .badge"); len(st) != 1 || st[0] != "mismatch" {
		t.Fatalf("the package page's failed location: %q", st)
	}

	// The events page follows new events live.
	click(`nav a[href="/ui/events"]`)
	must("wait for the live stream", chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("live"))))
	publishUI(t, env.c, "live-pkg", "1.0.0", "ci", "release", nil, map[string][]byte{"x": []byte("live\n")})
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`[...document.querySelectorAll("#event-rows tr")].some(r => r.innerText.includes("live-pkg@1.0.0"))`,
		chromedp.WithPollingTimeout(10*time.Second)))
	must("the new package's event did not appear live", err)
	shots.take("events")

	// Tokens: create one through the form; its secret is shown once.
	click(`nav a[href="/ui/tokens"]`)
	must("fill the token form", chromedp.Do(ctx, chromedp.SendKeys(chromedp.ID("tname"), "ci-deploy"),
		chromedp.SetValue(chromedp.ID("tscope"), "read"), chromedp.SendKeys(chromedp.ID("texpires"), "30d")))
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`form[action="/ui/tokens"] button[type=submit]`)))
	must("create a token", err)
	secret, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("new-token")))
	must("read the new token", err)
	if resp.Status != 201 {
		t.Fatalf("create a token: %d", resp.Status)
	}
	if tok, err := env.svc.Store.Authenticate(ctxT(t), strings.TrimSpace(secret)); err != nil || tok.Name != "ci-deploy" || tok.Scope != store.ScopeRead {
		t.Fatalf("the token the page showed: %v %+v", err, tok)
	}
	shots.take("tokens")

	// A narrow screen and the dark scheme.
	must("narrow", chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Navigate(base+"/ui/packages/web-frontend/1.4.0")))
	shots.take("version-narrow")
	must("wide again", chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)))
	_, err = chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
	must("dark", err)
	must("open packages", chromedp.Do(ctx, chromedp.Navigate(base+"/ui/")))
	shots.take("packages-dark")
	_, err = chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{})
	must("light", err)

	// Log out: back to the login page, and the pages stay closed.
	click(`form[action="/ui/logout"] button`)
	if loc := location(); loc != "/ui/login" {
		t.Fatalf("after logout at %s, want /ui/login", loc)
	}
	must("open packages", chromedp.Do(ctx, chromedp.Navigate(base+"/ui/packages/web-frontend/1.4.0")))
	if loc := location(); !strings.HasPrefix(loc, "/ui/login") {
		t.Fatalf("after logout a package page opens at %s, want the login page", loc)
	}
}

// waitDownload waits for the browser to finish writing path.
func waitDownload(t testing.TB, path string, size int64) []byte {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(path); err == nil && fi.Size() == size {
			if _, err := os.Stat(path + ".crdownload"); os.IsNotExist(err) {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	t.Fatalf("download of %s did not finish; directory holds %v", path, entries)
	return nil
}
