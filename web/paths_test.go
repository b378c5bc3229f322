package web

import "testing"

func TestCleanPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/v1/uploads": true, "/v1/packages/": true, "/v1/packages/a/1/files/dir/x.txt": true,
		"/v1/uploads//blobs/sha256:ab": false, "//": false, "/v1/./x": false, "/v1/../x": false, "/v1/x/.": false, "/v1//": false,
	} {
		if got := cleanPath(p); got != want {
			t.Errorf("cleanPath(%q) = %v, want %v", p, got, want)
		}
	}
}
