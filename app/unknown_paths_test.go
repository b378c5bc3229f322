package app

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestUnknownUploadPathsAre404JSON: a path with an empty, "." or ".."
// segment (an empty upload id from a script) answers 404 JSON, not the
// ServeMux redirect that curl -f counts as success.
func TestUnknownUploadPathsAre404JSON(t *testing.T) {
	env := startService(t, localConfig)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct{ method, path string }{
		{http.MethodPut, "/v1/uploads//blobs/sha256:" + strings.Repeat("ab", 32)},
		{http.MethodPost, "/v1/uploads//commit"},
		{http.MethodDelete, "/v1/uploads//"},
		{http.MethodGet, "/v1/packages/a/./1"},
		{http.MethodGet, "/v1/packages/a/../b/1"},
		{http.MethodPut, "/v1/uploads/0123/blobs/"},
		{http.MethodPost, "/v1/uploads/nosuchid/nothing"},
	} {
		req, _ := http.NewRequest(tc.method, env.url+tc.path, strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer "+env.token)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		if resp.StatusCode != http.StatusNotFound || json.Unmarshal(body, &e) != nil || e.Error.Code != "not_found" ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s: %d %s %q", tc.method, tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
}
