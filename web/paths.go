package web

import (
	"net/http"
	"path"
	"strings"
)

// cleanPath reports whether p has no empty, "." or ".." segment. The
// standard ServeMux answers such a path with a redirect to its cleaned
// form, which turns a client bug (an empty upload id in
// /v1/uploads//blobs/...) into a 307 that curl -f and most clients take
// as success; the API answers 404 instead.
func cleanPath(p string) bool {
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

func unknownPath(r *http.Request) error {
	return newErr(http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path+" (a path segment is empty, \".\" or \"..\")")
}
