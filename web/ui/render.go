package ui

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"artifactstore/store"
)

// page is what every template gets.
type page struct {
	Title string
	Nav   string
	V     *viewer
	Asset string
	Now   time.Time
	Data  any
}

var pageNames = []string{"login", "packages", "name", "version", "health", "events", "tokens", "error"}

func parsePages(now func() time.Time) (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"ago":       func(t time.Time) string { return relTime(t, now()) },
		"size":      humanSize,
		"iso":       func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"exact":     func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"pathEsc":   url.PathEscape,
		"fileURL":   fileURL,
		"short":     shortDigest,
		"status":    statusClass,
		"deref":     func(t *time.Time) time.Time { return *t },
		"deref64":   func(n *int64) int64 { return *n },
		"join":      strings.Join,
		"plural":    plural,
		"sentence":  sentence,
		"queryEsc":  url.QueryEscape,
		"hasPrefix": strings.HasPrefix,
	}
	out := map[string]*template.Template{}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	for _, n := range pageNames {
		c, err := base.Clone()
		if err != nil {
			return nil, err
		}
		if _, err := c.ParseFS(templateFS, "templates/"+n+".html"); err != nil {
			return nil, fmt.Errorf("template %s: %w", n, err)
		}
		out[n] = c
	}
	return out, nil
}

// assetVersion is a hash of the static files, for cache busting.
func assetVersion() string {
	h := sha256.New()
	fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := staticFS.ReadFile(p)
			h.Write([]byte(p))
			h.Write(b)
		}
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func (u *UI) render(w http.ResponseWriter, r *http.Request, v *viewer, status int, name, title string, data any) {
	t := u.pages[name]
	nav := name
	if name == "version" || name == "name" {
		nav = "packages"
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", page{Title: title, Nav: nav, V: v, Asset: u.assetVer, Now: u.opts.Now(), Data: data}); err != nil {
		u.log.Error("ui template failed", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

type errorData struct{ Heading, Message string }

func (u *UI) errorPage(w http.ResponseWriter, r *http.Request, v *viewer, status int, heading, msg string) {
	u.render(w, r, v, status, "error", heading, errorData{Heading: heading, Message: msg})
}

// humanSize writes bytes in binary units: 512 B, 4.0 KiB, 1.5 GiB.
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n)
	i := -1
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if f < 10 {
		return fmt.Sprintf("%.1f %s", f, units[i])
	}
	return fmt.Sprintf("%.0f %s", f, units[i])
}

// relTime says how long ago (or how far ahead) t is, to the largest unit.
func relTime(t, now time.Time) string {
	d := now.Sub(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < 45*time.Second:
		if future {
			return "in a few seconds"
		}
		return "just now"
	case d < 90*time.Minute:
		s = plural(int(d.Round(time.Minute)/time.Minute), "minute")
	case d < 36*time.Hour:
		s = plural(int(d.Round(time.Hour)/time.Hour), "hour")
	case d < 45*24*time.Hour:
		s = plural(int(d.Round(24*time.Hour)/(24*time.Hour)), "day")
	case d < 545*24*time.Hour:
		s = plural(int(d/(30*24*time.Hour)), "month")
	default:
		s = plural(int(d/(365*24*time.Hour)), "year")
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

// sentence starts s with a capital letter and ends it with a full stop.
func sentence(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	s = string(unicode.ToUpper(r)) + s[n:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// statusClass maps a location status to a badge style.
func statusClass(status string) string {
	switch status {
	case store.StatusVerified:
		return "ok"
	case store.StatusStored:
		return "neutral"
	case store.StatusMismatch, store.StatusMissing, store.StatusUnreadable:
		return "bad"
	default:
		return "warn"
	}
}

// fileURL is the interface's download link of one file; each path segment
// is escaped.
func fileURL(name, version, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return Prefix + "packages/" + url.PathEscape(name) + "/" + url.PathEscape(version) + "/files/" + strings.Join(segs, "/")
}
