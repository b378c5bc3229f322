package app

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"artifactstore/internal/client"
)

// TestAuthMatrix: every combination of token kind (none, garbage, revoked,
// expired, read, publish for the package's producer, publish for another
// producer, admin) and endpoint gets the expected status, with anonymous
// reads off and on.
func TestAuthMatrix(t *testing.T) {
	for _, anon := range []bool{false, true} {
		t.Run(fmt.Sprintf("anonymous_read=%v", anon), func(t *testing.T) {
			env := startService(t, localConfig+fmt.Sprintf("auth:\n  anonymous_read: %v\n", anon))
			runAuthMatrix(t, env, anon)
		})
	}
}

func runAuthMatrix(t *testing.T, env *testEnv, anon bool) {
	ctx := context.Background()
	st := env.svc.Store
	mk := func(name, scope string, producers []string, ttl time.Duration) string {
		tok, _, err := st.CreateToken(ctx, name, scope, producers, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	revoked := mk("revoked", "admin", nil, 0)
	recs, _ := st.ListTokens(ctx)
	for _, r := range recs {
		if r.Name == "revoked" {
			st.RevokeToken(ctx, r.ID)
		}
	}
	tokens := []struct{ kind, token string }{
		{"none", ""},
		{"garbage", "ast_000000000000_nope"},
		{"revoked", revoked},
		{"expired", mk("expired", "admin", nil, time.Nanosecond)},
		{"read", mk("reader", "read", nil, 0)},
		{"publish-own", mk("pub-a", "publish", []string{"ci-a", "ci-x"}, 0)},
		{"publish-other", mk("pub-b", "publish", []string{"ci-b"}, 0)},
		{"admin", mk("adm", "admin", nil, 0)},
	}
	files := map[string][]byte{"f.txt": []byte("auth matrix")}
	publish(t, env.c, manifestOf("authpkg", "1", "ci-a", "release", files), files)
	digest := "sha256:" + sha(files["f.txt"])

	do := func(method, path, token, ctype string, body io.Reader) int {
		req, _ := http.NewRequest(method, env.url+path, body)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// A fresh session of producer ci-a for each write check, opened by admin.
	n := 0
	session := func() (*client.BeginResponse, []byte) {
		n++
		data := []byte(fmt.Sprintf("session %d", n))
		br, err := env.c.Begin(ctx, manifestOf("authsess", fmt.Sprint(n), "ci-a", "release", map[string][]byte{"x": data}))
		if err != nil {
			t.Fatal(err)
		}
		return br, data
	}
	manifestJSON := func(producer string) string {
		n++
		return fmt.Sprintf(`{"name":"authnew","version":"%d","producer":"%s","retention_class":"release","files":[{"path":"a","size":1,"sha256":"%s"}]}`, n, producer, sha([]byte("a")))
	}
	form := func(producer string) (string, io.Reader) {
		n++
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, _ := mw.CreateFormField("manifest")
		fmt.Fprintf(fw, `{"name":"authform","version":"%d","producer":"%s","retention_class":"release"}`, n, producer)
		part, _ := mw.CreateFormFile("file", "a.txt")
		part.Write([]byte("form"))
		mw.Close()
		return mw.FormDataContentType(), &buf
	}

	type endpoint struct {
		name string
		kind string // read, write, admin, open
		call func(token string) int
	}
	eps := []endpoint{
		{"list", "read", func(tk string) int { return do("GET", "/v1/packages", tk, "", nil) }},
		{"versions", "read", func(tk string) int { return do("GET", "/v1/packages/authpkg", tk, "", nil) }},
		{"manifest", "read", func(tk string) int { return do("GET", "/v1/packages/authpkg/1", tk, "", nil) }},
		{"file", "read", func(tk string) int { return do("GET", "/v1/packages/authpkg/1/files/f.txt", tk, "", nil) }},
		{"blob", "read", func(tk string) int { return do("GET", "/v1/blobs/"+digest, tk, "", nil) }},
		{"events", "read", func(tk string) int { return do("GET", "/v1/events", tk, "", nil) }},
		{"health document", "read", func(tk string) int { return do("GET", "/v1/health", tk, "", nil) }},
		{"begin", "write", func(tk string) int {
			return do("POST", "/v1/uploads", tk, "application/json", strings.NewReader(manifestJSON("ci-a")))
		}},
		{"upload", "write", func(tk string) int {
			br, data := session()
			return do("PUT", "/v1/uploads/"+br.UploadID+"/blobs/sha256:"+sha(data), tk, "", bytes.NewReader(data))
		}},
		{"commit", "write", func(tk string) int {
			br, data := session()
			env.c.Upload(ctx, br.UploadID, sha(data), int64(len(data)), bytes.NewReader(data))
			return do("POST", "/v1/uploads/"+br.UploadID+"/commit", tk, "", nil)
		}},
		{"abort", "write", func(tk string) int {
			br, _ := session()
			return do("DELETE", "/v1/uploads/"+br.UploadID, tk, "", nil)
		}},
		{"one-request publish", "write", func(tk string) int {
			ct, body := form("ci-a")
			return do("POST", "/v1/packages", tk, ct, body)
		}},
		{"admin storage", "admin", func(tk string) int { return do("GET", "/v1/admin/storage", tk, "", nil) }},
		{"admin tokens", "admin", func(tk string) int { return do("GET", "/v1/admin/tokens", tk, "", nil) }},
		{"admin db check", "admin", func(tk string) int { return do("GET", "/v1/admin/db/check", tk, "", nil) }},
		{"healthz", "open", func(tk string) int { return do("GET", "/healthz", tk, "", nil) }},
		{"metrics", "open", func(tk string) int { return do("GET", "/metrics", tk, "", nil) }},
	}
	success := map[string]int{"begin": 201, "upload": 201, "commit": 201, "abort": 204, "one-request publish": 201}
	for _, ep := range eps {
		for _, tk := range tokens {
			want := func() int {
				ok := success[ep.name]
				if ok == 0 {
					ok = 200
				}
				bad := tk.kind == "garbage" || tk.kind == "revoked" || tk.kind == "expired"
				switch {
				case ep.kind == "open":
					return ok
				case tk.kind == "none":
					if ep.kind == "read" && anon {
						return ok
					}
					return 401
				case bad:
					return 401
				}
				switch ep.kind {
				case "read":
					return ok
				case "write":
					if tk.kind == "admin" || tk.kind == "publish-own" {
						return ok
					}
					return 403
				case "admin":
					if tk.kind == "admin" {
						return ok
					}
					return 403
				}
				return 0
			}()
			if got := ep.call(tk.token); got != want {
				t.Errorf("%s with %s token: status %d, want %d", ep.name, tk.kind, got, want)
			}
		}
	}
	// Publishing as a producer the token is not bound to is 403 even with
	// a matching session producer elsewhere.
	pubB := tokens[6].token
	if got := do("POST", "/v1/uploads", pubB, "application/json", strings.NewReader(manifestJSON("ci-a"))); got != 403 {
		t.Errorf("publish token for ci-b publishing as ci-a: %d", got)
	}
	if got := do("POST", "/v1/uploads", pubB, "application/json", strings.NewReader(manifestJSON("ci-b"))); got != 201 {
		t.Errorf("publish token for ci-b publishing as ci-b: %d", got)
	}
}
