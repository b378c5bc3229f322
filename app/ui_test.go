package app

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"artifactstore/internal/client"
	"artifactstore/internal/digest"
	"artifactstore/internal/verify"
	"artifactstore/store"
)

const uiConfig = `data_dir: @DIR@/data
backends:
  local:
    type: local
    path: @DIR@/objects
    key_prefix: artifacts
routing:
  default: local
verify:
  deep:
    interval: 0s
  quick:
    interval: 0s
`

// uiBrowser is a cookie-keeping HTTP client of the web interface that does
// not follow redirects.
type uiBrowser struct {
	t    testing.TB
	base string
	c    *http.Client
}

func newUIBrowser(t testing.TB, base string) *uiBrowser {
	jar, _ := cookiejar.New(nil)
	return &uiBrowser{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *uiBrowser) do(method, path string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp, string(raw)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf returns the CSRF token of the first form of a page.
func csrfOf(t testing.TB, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no csrf field in the page:\n%s", page)
	}
	return m[1]
}

// login logs in through the login form and returns the page it lands on.
func (b *uiBrowser) login(token string) {
	b.t.Helper()
	_, page := b.do("GET", "/ui/login", nil)
	resp, body := b.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(b.t, page)}, "token": {token}, "next": {"/ui/"}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/" {
		b.t.Fatalf("login: %d %s\n%s", resp.StatusCode, resp.Header.Get("Location"), body)
	}
}

// publishUI publishes a package for the interface tests.
func publishUI(t testing.TB, c *client.Client, name, version, producer, class string, labels map[string]string, files map[string][]byte) {
	t.Helper()
	m := manifestOf(name, version, producer, class, files)
	m.Labels = labels
	publish(t, c, m, files)
}

// TestUIAccess: the interface follows the API's token rules. Without a
// token and with anonymous reads off every page redirects to the login page
// and no response carries package data; a read token may browse but not
// open or use the tokens page; forms need their CSRF token; the session
// cookie is HttpOnly, SameSite=Strict, expiring, and Secure over TLS;
// logging out or revoking the token ends the session.
func TestUIAccess(t *testing.T) {
	env := startService(t, uiConfig)
	secretFile := []byte("the secret content of a.txt\n")
	publishUI(t, env.c, "secret-pkg", "1.0.0", "hidden-producer", "release", map[string]string{"codename": "bluebird"},
		map[string][]byte{"a.txt": secretFile})
	fileDigest := sha(secretFile)
	ctx := context.Background()

	// Secrets of the data: none may appear in any answer to a visitor
	// without a session. The name and version may appear only where the
	// request itself carried them (the next= of the redirect).
	data := []string{"hidden-producer", "bluebird", fileDigest, "the secret content"}
	pages := []string{"/", "/ui/", "/ui/?q=secret", "/ui/?label=codename%3Dbluebird", "/ui/packages/secret-pkg",
		"/ui/packages/secret-pkg/1.0.0", "/ui/packages/secret-pkg/1.0.0/files/a.txt", "/ui/health", "/ui/events",
		"/ui/events/stream", "/ui/tokens", "/ui/no-such-page"}
	anon := newUIBrowser(t, env.url)
	for _, p := range pages {
		for _, method := range []string{"GET", "HEAD"} {
			resp, body := anon.do(method, p, nil)
			loc := resp.Header.Get("Location")
			wantLoc := "/ui/login"
			if p == "/" {
				wantLoc = "/ui/"
			}
			if resp.StatusCode/100 != 3 || !strings.HasPrefix(loc, wantLoc) {
				t.Errorf("%s %s without a session: %d Location %q, want a redirect to %s", method, p, resp.StatusCode, loc, wantLoc)
			}
			all := body + loc + resp.Header.Get("Set-Cookie")
			for _, s := range data {
				if strings.Contains(all, s) {
					t.Errorf("%s %s without a session leaks %q: %s", method, p, s, all)
				}
			}
			if !strings.Contains(p, "secret-pkg") && strings.Contains(all, "secret-pkg") {
				t.Errorf("%s %s without a session names the package: %s", method, p, all)
			}
		}
	}
	before, _ := env.svc.Store.ListTokens(ctx)
	for _, p := range []string{"/ui/tokens", "/ui/tokens/" + before[0].ID + "/revoke", "/ui/logout"} {
		resp, _ := anon.do("POST", p, url.Values{"name": {"x"}, "scope": {"admin"}})
		if p != "/ui/logout" && (resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/login")) {
			t.Errorf("POST %s without a session: %d, want a redirect to login", p, resp.StatusCode)
		}
	}
	if after, _ := env.svc.Store.ListTokens(ctx); len(after) != len(before) {
		t.Fatalf("a POST without a session changed the tokens: %d -> %d", len(before), len(after))
	}

	// Login: a bad token is refused with no session; a form without the
	// CSRF cookie is refused; next= may only point into the interface.
	b := newUIBrowser(t, env.url)
	_, page := b.do("GET", "/ui/login", nil)
	resp, body := b.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {"ast_000000000000_nope"}})
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "unknown, revoked or expired") || strings.Contains(resp.Header.Get("Set-Cookie"), "artifactstore_session=") {
		t.Fatalf("login with a bad token: %d %q\n%s", resp.StatusCode, resp.Header.Get("Set-Cookie"), body)
	}
	fresh := newUIBrowser(t, env.url)
	resp, _ = fresh.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {env.token}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login without the CSRF cookie: %d, want 403", resp.StatusCode)
	}
	_, page = fresh.do("GET", "/ui/login", nil)
	resp, _ = fresh.do("POST", "/ui/login", url.Values{"csrf": {csrfOf(t, page)}, "token": {env.token}, "next": {"//evil.example/ui/"}})
	if resp.Header.Get("Location") != "/ui/" {
		t.Fatalf("login with next=//evil.example: redirected to %q", resp.Header.Get("Location"))
	}

	// The session cookie's attributes, over plain HTTP and over TLS.
	for _, scheme := range []string{"http", "https"} {
		get := httptest.NewRequest("GET", scheme+"://example.test/ui/login", nil)
		rec := httptest.NewRecorder()
		env.svc.API.ServeHTTP(rec, get)
		csrf := csrfOf(t, rec.Body.String())
		post := httptest.NewRequest("POST", scheme+"://example.test/ui/login", strings.NewReader(url.Values{"csrf": {csrf}, "token": {env.token}}.Encode()))
		post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range rec.Result().Cookies() {
			post.AddCookie(c)
		}
		rec = httptest.NewRecorder()
		env.svc.API.ServeHTTP(rec, post)
		var sc *http.Cookie
		for _, c := range rec.Result().Cookies() {
			if c.Name == "artifactstore_session" {
				sc = c
			}
		}
		if sc == nil {
			t.Fatalf("%s login set no session cookie: %d %v", scheme, rec.Code, rec.Result().Header)
		}
		if !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/ui/" || sc.MaxAge <= 0 ||
			sc.Expires.Before(time.Now()) || sc.Expires.After(time.Now().Add(13*time.Hour)) || sc.Secure != (scheme == "https") {
			t.Fatalf("%s session cookie: %+v (raw %q)", scheme, sc, rec.Header().Values("Set-Cookie"))
		}
	}

	// A read token browses, but the tokens page and its forms are refused.
	readTok, _, err := env.svc.Store.CreateToken(ctx, "reader", store.ScopeRead, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	reader := newUIBrowser(t, env.url)
	reader.login(readTok)
	resp, body = reader.do("GET", "/ui/", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "secret-pkg") {
		t.Fatalf("read token on the packages page: %d\n%s", resp.StatusCode, body)
	}
	if strings.Contains(body, `href="/ui/tokens"`) {
		t.Errorf("the navigation offers the tokens page to a read token")
	}
	csrf := csrfOf(t, body) // the logout form's token is the session's
	resp, body = reader.do("GET", "/ui/tokens", nil)
	if resp.StatusCode != http.StatusForbidden || strings.Contains(body, before[0].ID) || strings.Contains(body, "e2e") {
		t.Fatalf("read token on the tokens page: %d, want 403 without token data\n%s", resp.StatusCode, body)
	}
	resp, _ = reader.do("POST", "/ui/tokens", url.Values{"csrf": {csrf}, "name": {"sneaky"}, "scope": {"admin"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("read token creating a token: %d, want 403", resp.StatusCode)
	}
	resp, _ = reader.do("POST", "/ui/tokens/"+before[0].ID+"/revoke", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("read token revoking a token: %d, want 403", resp.StatusCode)
	}
	if after, _ := env.svc.Store.ListTokens(ctx); len(after) != len(before)+1 {
		t.Fatalf("tokens after the read token's attempts: %d, want %d", len(after), len(before)+1)
	}

	// An admin's forms need the session's CSRF token.
	admin := newUIBrowser(t, env.url)
	admin.login(env.token)
	_, page = admin.do("GET", "/ui/tokens", nil)
	acsrf := csrfOf(t, page)
	for _, bad := range []string{"", "x" + acsrf, csrf} {
		resp, _ = admin.do("POST", "/ui/tokens", url.Values{"csrf": {bad}, "name": {"ci"}, "scope": {"read"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("create with csrf %q: %d, want 403", bad, resp.StatusCode)
		}
	}
	resp, page = admin.do("POST", "/ui/tokens", url.Values{"csrf": {acsrf}, "name": {"ci-deploy"}, "scope": {"publish"}, "producers": {"alice, bob"}, "expires": {"30d"}})
	secret := regexp.MustCompile(`ast_[0-9a-f]{12}_[A-Za-z0-9_-]+`).FindString(page)
	if resp.StatusCode != http.StatusCreated || secret == "" {
		t.Fatalf("create a token: %d\n%s", resp.StatusCode, page)
	}
	tok, err := env.svc.Store.Authenticate(ctx, secret)
	if err != nil || tok.Scope != store.ScopePublish || !tok.MayPublishAs("bob") || tok.ExpiresAt == nil {
		t.Fatalf("the created token: %v %+v", err, tok)
	}
	resp, _ = admin.do("POST", "/ui/tokens", url.Values{"csrf": {acsrf}, "name": {"bad"}, "scope": {"publish"}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("create a publish token without producers: %d, want 400", resp.StatusCode)
	}
	resp, _ = admin.do("POST", "/ui/tokens/"+tok.ID+"/revoke", url.Values{"csrf": {"wrong"}})
	if _, err := env.svc.Store.Authenticate(ctx, secret); resp.StatusCode != http.StatusForbidden || err != nil {
		t.Fatalf("revoke with a wrong csrf: %d, token check %v", resp.StatusCode, err)
	}
	resp, _ = admin.do("POST", "/ui/tokens/"+tok.ID+"/revoke", url.Values{"csrf": {acsrf}})
	if _, err := env.svc.Store.Authenticate(ctx, secret); resp.StatusCode != http.StatusSeeOther || err == nil {
		t.Fatalf("revoke: %d, token still valid: %v", resp.StatusCode, err)
	}

	// Revoking the reader's token ends its session at the next request.
	readID := strings.Split(strings.TrimPrefix(readTok, "ast_"), "_")[0]
	if err := env.svc.Store.RevokeToken(ctx, readID); err != nil {
		t.Fatal(err)
	}
	resp, _ = reader.do("GET", "/ui/", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after revoking its token the session still reads: %d", resp.StatusCode)
	}

	// Logging out needs the CSRF token, then ends the session.
	resp, _ = admin.do("POST", "/ui/logout", url.Values{"csrf": {"nope"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without the csrf token: %d, want 403", resp.StatusCode)
	}
	resp, _ = admin.do("POST", "/ui/logout", url.Values{"csrf": {acsrf}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/login" {
		t.Fatalf("logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = admin.do("GET", "/ui/", nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after logout: %d, want a redirect to login", resp.StatusCode)
	}
}

// TestUIAnonymousRead: with auth.anonymous_read the pages are readable
// without a session, but the tokens page still needs an admin login.
func TestUIAnonymousRead(t *testing.T) {
	env := startService(t, uiConfig+"auth:\n  anonymous_read: true\n")
	publishUI(t, env.c, "open-pkg", "2.0.0", "ci", "release", nil, map[string][]byte{"x.bin": randBytes(3, 100)})
	b := newUIBrowser(t, env.url)
	for _, p := range []string{"/ui/", "/ui/packages/open-pkg", "/ui/packages/open-pkg/2.0.0", "/ui/health", "/ui/events"} {
		resp, body := b.do("GET", p, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, "open-pkg") && p != "/ui/health" {
			t.Fatalf("anonymous GET %s: %d\n%s", p, resp.StatusCode, body)
		}
	}
	resp, body := b.do("GET", "/ui/packages/open-pkg/2.0.0/files/x.bin", nil)
	if resp.StatusCode != 200 || len(body) != 100 {
		t.Fatalf("anonymous download: %d, %d bytes", resp.StatusCode, len(body))
	}
	resp, _ = b.do("GET", "/ui/tokens", nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/login") {
		t.Fatalf("anonymous tokens page: %d %q, want a redirect to login", resp.StatusCode, resp.Header.Get("Location"))
	}
}

// TestUIPagesValidAndLinked crawls every page reachable from the packages
// page as an admin, with a failed location on the health page: every page
// passes the strict HTML check and every link and asset answers 200.
func TestUIPagesValidAndLinked(t *testing.T) {
	env := startService(t, uiConfig)
	files := map[string][]byte{"bin/tool": randBytes(11, 4096), "docs/a b.txt": []byte("spaces in a path\n"), "README.md": []byte("# readme\n")}
	publishUI(t, env.c, "crawl", "1.0.0", "ci", "release", map[string]string{"team": "web", "git.sha": "abc"}, files)
	publishUI(t, env.c, "crawl", "1.1.0+build.7", "ci", "release", map[string]string{"team": "web"}, map[string][]byte{"bin/tool": randBytes(12, 4096)})
	publishUI(t, env.c, "other", "0.1", "alice", "nightly", nil, map[string][]byte{"x": randBytes(13, 10)})
	d, _ := digest.Parse("sha256:" + sha(files["bin/tool"]))
	localCorrupter(env.svc.Config.Backends["local"].Path).flip(t, d)
	if _, err := env.svc.Verify.Run(ctxT(t), "local", store.ModeDeep, verify.Hooks{}); err != nil {
		t.Fatal(err)
	}
	b := newUIBrowser(t, env.url)
	b.login(env.token)
	start := []string{"/ui/", "/ui/?label=team%3Dweb", "/ui/?q=cr&producer=ci", "/ui/events?type=v1.package.created", "/ui/login"}
	seen := map[string]bool{}
	queue := append([]string{}, start...)
	pagesChecked := 0
	for len(queue) > 0 && len(seen) < 300 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		resp, body := b.do("GET", p, nil)
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %d, want 200", p, resp.StatusCode)
			continue
		}
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			continue
		}
		pagesChecked++
		for _, problem := range checkHTML([]byte(body)) {
			t.Errorf("%s: %s", p, problem)
		}
		for _, l := range pageLinks([]byte(body)) {
			u, err := url.Parse(l)
			if err != nil || u.Host != "" || !strings.HasPrefix(u.Path, "/") {
				t.Errorf("%s links outside the service or malformed: %q", p, l)
				continue
			}
			if u.Path == "/ui/login" && p != "/ui/login" {
				continue // a fresh login form; checked once as a start page
			}
			if !seen[l] {
				queue = append(queue, l)
			}
		}
	}
	for _, want := range []string{"/ui/packages/crawl/1.1.0+build.7", "/ui/packages/crawl/1.0.0/files/docs/a%20b.txt", "/ui/health", "/ui/tokens", "/ui/packages/other"} {
		if !seen[want] {
			t.Errorf("the crawl never reached %s", want)
		}
	}
	if pagesChecked < 10 {
		t.Fatalf("only %d pages checked: %v", pagesChecked, seen)
	}
	t.Logf("%d URLs fetched, %d HTML pages checked", len(seen), pagesChecked)

	// The checker itself finds what it claims to.
	for _, bad := range []string{
		"<!DOCTYPE html><html><head><title>x</title></head><body><main><p><div></div></p></main></body></html>",
		"<!DOCTYPE html><html><head><title>x</title></head><body><main><span></main></body></html>",
		"<!DOCTYPE html><html><head><title>x</title></head><body><main><a id=a></a><b id=a></b></main></body></html>",
		"<html><head><title>x</title></head><body><main></main></body></html>",
	} {
		if len(checkHTML([]byte(bad))) == 0 {
			t.Errorf("checkHTML found nothing wrong in %s", bad)
		}
	}
}
