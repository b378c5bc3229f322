package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"artifactstore/store"
)

const pageSize = 50

// copies summarises the storage locations of a set of files.
type copies struct {
	Failed  int // locations with a failed verdict
	Pending int // locations in a state other than stored/verified/failed, or files with no location at all
	// Unreadable counts files without a location that may be read.
	Unreadable int
	Stored     int
	Total      int
	// Verified counts verified locations.
	Verified int
}

func (c copies) AllVerified() bool { return c.Total > 0 && c.Verified == c.Total }

func countCopies(files []store.File, locs map[string][]store.Location) copies {
	var c copies
	for _, f := range files {
		usable := false
		for _, l := range locs[f.Digest] {
			c.Total++
			switch {
			case l.Failed():
				c.Failed++
			case l.Status == store.StatusVerified:
				c.Verified++
				usable = true
			case l.Status == store.StatusStored:
				c.Stored++
				usable = true
			default:
				c.Pending++
			}
		}
		if !usable {
			c.Unreadable++
		}
		if len(locs[f.Digest]) == 0 {
			c.Pending++
		}
	}
	return c
}

func totalSize(p *store.Package) int64 {
	var n int64
	for _, f := range p.Files {
		n += f.Size
	}
	return n
}

type pkgRow struct {
	Name     string
	Latest   *store.Package
	Match    *store.Package
	Versions int
	Size     int64
	Copies   copies
}

type packagesData struct {
	Q, Producer, Retention, Label string
	Filtered                      bool
	Rows                          []pkgRow
	Next                          string
	Error                         string
	Cursor                        string
}

// NextURL is the link to the following page, keeping the search.
func (d packagesData) NextURL() string {
	q := url.Values{}
	for k, v := range map[string]string{"q": d.Q, "producer": d.Producer, "retention_class": d.Retention, "label": d.Label, "cursor": d.Next} {
		if v != "" {
			q.Set(k, v)
		}
	}
	return Prefix + "?" + q.Encode()
}

// parseLabels reads "k=v, k2=v2" (commas or spaces between pairs).
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q is not key=value", f)
		}
		out[k] = v
	}
	return out, nil
}

func (u *UI) packagesPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	qs := r.URL.Query()
	d := packagesData{Q: strings.TrimSpace(qs.Get("q")), Producer: strings.TrimSpace(qs.Get("producer")),
		Retention: strings.TrimSpace(qs.Get("retention_class")), Label: strings.TrimSpace(qs.Get("label")), Cursor: qs.Get("cursor")}
	labels, err := parseLabels(d.Label)
	if err != nil {
		d.Error = err.Error() + "."
		u.render(w, r, v, http.StatusBadRequest, "packages", "Packages", d)
		return
	}
	q := store.NameQuery{NamePrefix: d.Q, Filter: store.Filter{Producer: d.Producer, RetentionClass: d.Retention, Labels: labels},
		Cursor: d.Cursor, Limit: pageSize}
	d.Filtered = d.Producer != "" || d.Retention != "" || len(labels) > 0 || d.Q != ""
	res, err := u.opts.Catalog.RecentNames(r.Context(), q)
	if errors.Is(err, store.ErrBadCursor) {
		d.Error = "That page link is not valid any more; start again from the first page."
		u.render(w, r, v, http.StatusBadRequest, "packages", "Packages", d)
		return
	}
	if err != nil {
		u.fail(w, r, v, err)
		return
	}
	var digests []string
	for _, n := range res.Names {
		for _, f := range n.Latest.Files {
			digests = append(digests, f.Digest)
		}
		if n.Match != n.Latest {
			for _, f := range n.Match.Files {
				digests = append(digests, f.Digest)
			}
		}
	}
	locs, err := u.opts.Catalog.LocationsOf(r.Context(), digests)
	if err != nil {
		u.fail(w, r, v, err)
		return
	}
	for _, n := range res.Names {
		files := n.Latest.Files
		if n.Match != n.Latest {
			files = append(append([]store.File{}, files...), n.Match.Files...)
		}
		d.Rows = append(d.Rows, pkgRow{Name: n.Name, Latest: n.Latest, Match: n.Match, Versions: n.Versions,
			Size: totalSize(n.Latest), Copies: countCopies(files, locs)})
	}
	d.Next = res.Next
	u.render(w, r, v, http.StatusOK, "packages", "Packages", d)
}

type versionRow struct {
	P      *store.Package
	Size   int64
	Copies copies
}

type nameData struct {
	Name   string
	Rows   []versionRow
	Next   string
	Cursor string
}

func (u *UI) namePage(w http.ResponseWriter, r *http.Request, v *viewer) {
	name := r.PathValue("name")
	cursor := r.URL.Query().Get("cursor")
	pg, err := u.opts.Catalog.ListVersions(r.Context(), name, cursor, pageSize)
	if errors.Is(err, store.ErrBadCursor) {
		u.errorPage(w, r, v, http.StatusBadRequest, "Stale link", "That page link is not valid; open the package again.")
		return
	}
	if err != nil {
		u.fail(w, r, v, err)
		return
	}
	if len(pg.Packages) == 0 && cursor == "" {
		u.errorPage(w, r, v, http.StatusNotFound, "No such package", "There is no package named "+name+".")
		return
	}
	var digests []string
	for _, p := range pg.Packages {
		for _, f := range p.Files {
			digests = append(digests, f.Digest)
		}
	}
	locs, err := u.opts.Catalog.LocationsOf(r.Context(), digests)
	if err != nil {
		u.fail(w, r, v, err)
		return
	}
	d := nameData{Name: name, Next: pg.Next, Cursor: cursor}
	for _, p := range pg.Packages {
		d.Rows = append(d.Rows, versionRow{P: p, Size: totalSize(p), Copies: countCopies(p.Files, locs)})
	}
	u.render(w, r, v, http.StatusOK, "name", name, d)
}

// treeNode is a directory or a file of a package's file tree.
type treeNode struct {
	Name     string
	Path     string
	Size     int64
	Files    int
	File     *fileRow
	Children []*treeNode
}

type fileRow struct {
	store.File
	URL       string
	Locations []store.Location
	Copies    copies
}

func buildTree(files []fileRow) *treeNode {
	root := &treeNode{}
	for i := range files {
		f := &files[i]
		parts := strings.Split(f.Path, "/")
		n := root
		for j, part := range parts {
			n.Size += f.Size
			n.Files++
			if j == len(parts)-1 {
				n.Children = append(n.Children, &treeNode{Name: part, Path: f.Path, Size: f.Size, Files: 1, File: f})
				break
			}
			var next *treeNode
			for _, c := range n.Children {
				if c.File == nil && c.Name == part {
					next = c
				}
			}
			if next == nil {
				next = &treeNode{Name: part, Path: strings.Join(parts[:j+1], "/")}
				n.Children = append(n.Children, next)
			}
			n = next
		}
	}
	var order func(n *treeNode)
	order = func(n *treeNode) {
		sort.SliceStable(n.Children, func(i, j int) bool {
			a, b := n.Children[i], n.Children[j]
			if (a.File == nil) != (b.File == nil) {
				return a.File == nil // directories first
			}
			return a.Name < b.Name
		})
		for _, c := range n.Children {
			order(c)
		}
	}
	order(root)
	return root
}

type locRow struct {
	Path string
	store.Location
}

type versionData struct {
	P        *store.Package
	Size     int64
	Tree     *treeNode
	Files    []fileRow
	Locs     []locRow
	Copies   copies
	Labels   []labelPair
	Curl     []string
	CurlMore int
	Pull     string
	Backends []string
}

type labelPair struct{ Key, Value string }

func sortedLabels(m map[string]string) []labelPair {
	out := make([]labelPair, 0, len(m))
	for k, v := range m {
		out = append(out, labelPair{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// baseURL is the address the browser used to reach the service.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (u *UI) versionPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	view, err := u.opts.Packages.GetPackage(r.Context(), r.PathValue("name"), r.PathValue("version"))
	if errors.Is(err, store.ErrNotFound) {
		u.errorPage(w, r, v, http.StatusNotFound, "No such package", "There is no package "+r.PathValue("name")+"@"+r.PathValue("version")+".")
		return
	}
	if err != nil {
		u.fail(w, r, v, err)
		return
	}
	p := view.Package
	d := versionData{P: p, Size: totalSize(p), Labels: sortedLabels(p.Labels), Copies: countCopies(p.Files, view.Locations)}
	backends := map[string]bool{}
	for _, f := range p.Files {
		fr := fileRow{File: f, URL: fileURL(p.Name, p.Version, f.Path), Locations: view.Locations[f.Digest],
			Copies: countCopies([]store.File{f}, view.Locations)}
		d.Files = append(d.Files, fr)
		for _, l := range fr.Locations {
			d.Locs = append(d.Locs, locRow{Path: f.Path, Location: l})
			backends[l.Backend] = true
		}
		if len(fr.Locations) == 0 {
			d.Locs = append(d.Locs, locRow{Path: f.Path, Location: store.Location{Digest: f.Digest, Backend: f.Backend, Size: f.Size, Status: "no location"}})
		}
	}
	for b := range backends {
		d.Backends = append(d.Backends, b)
	}
	sort.Strings(d.Backends)
	d.Tree = buildTree(d.Files)
	base := baseURL(r)
	for i, f := range p.Files {
		if i == 3 {
			d.CurlMore = len(p.Files) - 3
			break
		}
		target := f.Path[strings.LastIndex(f.Path, "/")+1:]
		api := base + "/v1/packages/" + url.PathEscape(p.Name) + "/" + url.PathEscape(p.Version) + "/files/" + strings.TrimPrefix(fileURL("", "", f.Path), Prefix+"packages///files/")
		d.Curl = append(d.Curl, fmt.Sprintf(`curl -fL -H "Authorization: Bearer $ARTIFACTSTORE_TOKEN" -o %s %s`, shellQuote(target), shellQuote(api)))
	}
	d.Pull = fmt.Sprintf("ARTIFACTSTORE_URL=%s artifactstore pull --to %s %s@%s", shellQuote(base), shellQuote(p.Name+"-"+p.Version), p.Name, p.Version)
	u.render(w, r, v, http.StatusOK, "version", p.Name+"@"+p.Version, d)
}

// download forwards to the API's file route with the session's token, so
// the answer (ranges, ETag, Repr-Digest, errors) is the API's own.
func (u *UI) download(w http.ResponseWriter, r *http.Request, v *viewer) {
	segs := strings.Split(r.PathValue("path"), "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	u.forward(w, r, v, "/v1/packages/"+url.PathEscape(r.PathValue("name"))+"/"+url.PathEscape(r.PathValue("version"))+"/files/"+strings.Join(segs, "/"), "")
}

// forward runs the API handler for path as the viewer.
func (u *UI) forward(w http.ResponseWriter, r *http.Request, v *viewer, path, rawQuery string) {
	r2 := r.Clone(r.Context())
	r2.URL = &url.URL{Path: mustUnescape(path), RawPath: path, RawQuery: rawQuery}
	r2.RequestURI = r2.URL.RequestURI()
	r2.Header.Del("Authorization")
	r2.Header.Del("Cookie")
	if v.session != nil {
		r2.Header.Set("Authorization", "Bearer "+v.session.token)
	}
	w.Header().Del("Cache-Control")
	u.opts.API.ServeHTTP(w, r2)
}

func mustUnescape(p string) string {
	s, err := url.PathUnescape(p)
	if err != nil {
		return p
	}
	return s
}

// fail shows an unexpected error without its details (they are logged).
func (u *UI) fail(w http.ResponseWriter, r *http.Request, v *viewer, err error) {
	if r.Context().Err() != nil {
		return
	}
	u.log.Error("ui page failed", "path", r.URL.Path, "err", err)
	u.errorPage(w, r, v, http.StatusInternalServerError, "Something went wrong", "The page could not be built; the server log has the details.")
}

// Health page.

type runSummary struct {
	ID         string         `json:"id"`
	StartedAt  time.Time      `json:"started_at"`
	FinishedAt *time.Time     `json:"finished_at"`
	Checked    int            `json:"checked"`
	ByVerdict  map[string]int `json:"by_verdict"`
	BytesRead  int64          `json:"bytes_read"`
	Orphans    int            `json:"orphans"`
	Error      string         `json:"error"`
}

type verifyState struct {
	Mode          string
	Running       bool        `json:"running"`
	Current       *runSummary `json:"current"`
	LastRun       *runSummary `json:"last_run"`
	LastSuccessAt *time.Time  `json:"last_success_at"`
	NextRunAt     *time.Time  `json:"next_run_at"`
	Overruns      int         `json:"overruns"`
}

type backendHealth struct {
	ID           string                 `json:"id"`
	Up           bool                   `json:"up"`
	Error        string                 `json:"error"`
	Objects      *int64                 `json:"objects"`
	Bytes        *int64                 `json:"bytes"`
	Locations    map[string]int         `json:"locations_by_status"`
	Verification map[string]verifyState `json:"verification"`
}

// Modes lists the verification states in a stable order.
func (b backendHealth) Modes() []verifyState {
	var out []verifyState
	keys := make([]string, 0, len(b.Verification))
	for k := range b.Verification {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		s := b.Verification[k]
		s.Mode = k
		out = append(out, s)
	}
	return out
}

// LocationCount sums the locations by status.
func (b backendHealth) LocationCount() int {
	n := 0
	for _, c := range b.Locations {
		n += c
	}
	return n
}

// Statuses lists the location counts in a stable order.
func (b backendHealth) Statuses() []statusCount {
	var out []statusCount
	for k, n := range b.Locations {
		out = append(out, statusCount{k, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Status < out[j].Status })
	return out
}

type statusCount struct {
	Status string
	N      int
}

type failedRow struct {
	store.Location
	Packages []*store.Package
}

type extraSection struct {
	Key, JSON string
}

type healthData struct {
	Status      string
	Backends    []backendHealth
	Failed      []failedRow
	FailedTotal int
	// Action is the document's advice when locations failed.
	Action string
	Extra  []extraSection
}

func (u *UI) healthPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	raw, err := u.opts.Health(r.Context())
	if err != nil {
		u.fail(w, r, v, err)
		return
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		u.fail(w, r, v, fmt.Errorf("health document: %w", err))
		return
	}
	var d healthData
	var failed []store.Location
	known := map[string]any{"status": &d.Status, "backends": &d.Backends, "failed_locations": &failed, "failed_total": &d.FailedTotal, "action": &d.Action}
	var extraKeys []string
	for k, val := range doc {
		if dst, ok := known[k]; ok {
			if err := json.Unmarshal(val, dst); err != nil {
				u.fail(w, r, v, fmt.Errorf("health document %s: %w", k, err))
				return
			}
			continue
		}
		extraKeys = append(extraKeys, k)
	}
	sort.Strings(extraKeys)
	for _, k := range extraKeys {
		var pretty any
		json.Unmarshal(doc[k], &pretty)
		b, _ := json.MarshalIndent(pretty, "", "  ")
		d.Extra = append(d.Extra, extraSection{Key: k, JSON: string(b)})
	}
	var digests []string
	for _, l := range failed {
		digests = append(digests, l.Digest)
	}
	holders, err := u.opts.Catalog.PackagesWithDigests(r.Context(), digests, 3, 0)
	if err != nil {
		u.fail(w, r, v, err)
		return
	}
	for _, l := range failed {
		d.Failed = append(d.Failed, failedRow{Location: l, Packages: holders[l.Digest]})
	}
	u.render(w, r, v, http.StatusOK, "health", "Health", d)
}

// Events page.

// eventTypes are the types the filter offers: the store's own events,
// including integrity (failed, verified, repaired locations) and runs.
var eventTypes = []string{
	store.EventPackageCreated,
	store.EventPackageDeleted,
	store.EventLocationCreated,
	store.EventLocationVerified,
	store.EventLocationFailed,
	store.EventLocationRepaired,
	store.EventLocationDeleted,
	store.EventVerificationRunCompleted,
}

type eventRow struct {
	store.Event
	Fields  []labelPair
	Package string // name@version the event is about, if any
	Name    string
	Version string
	Bad     bool
}

type eventsData struct {
	Type   string
	Types  []string
	Rows   []eventRow
	Next   uint64
	Before uint64
	Top    uint64
}

func eventRowOf(e store.Event) eventRow {
	row := eventRow{Event: e}
	var data map[string]any
	json.Unmarshal(e.Data, &data)
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch k {
		case "name", "version", "digest", "run_id", "at", "stored_at":
			continue // in other columns, or noise
		}
		var s string
		switch x := data[k].(type) {
		case string:
			s = x
		case float64:
			switch k {
			case "bytes", "size", "bytes_read":
				s = humanSize(int64(x))
			case "duration_ns":
				k, s = "took", time.Duration(x).Round(10*time.Microsecond).String()
			default:
				s = strconv.FormatFloat(x, 'f', -1, 64)
			}
		case map[string]any:
			var parts []string
			for lk, lv := range x {
				parts = append(parts, fmt.Sprintf("%s=%v", lk, lv))
			}
			sort.Strings(parts)
			s = strings.Join(parts, " ")
		default:
			b, _ := json.Marshal(x)
			s = string(b)
		}
		row.Fields = append(row.Fields, labelPair{k, s})
	}
	if e.Type == store.EventPackageCreated {
		if n, ver, ok := strings.Cut(e.Subject, "@"); ok {
			row.Name, row.Version, row.Package = n, ver, e.Subject
		}
	}
	if v, _ := data["verdict"].(string); v != "" && v != store.StatusVerified {
		row.Bad = true
	}
	return row
}

func (u *UI) eventsPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	qs := r.URL.Query()
	d := eventsData{Type: qs.Get("type"), Types: eventTypes}
	if d.Type != "" && !slices.Contains(eventTypes, d.Type) {
		d.Types = append(slices.Clip(eventTypes), d.Type)
	}
	if b := qs.Get("before"); b != "" {
		n, err := strconv.ParseUint(b, 10, 64)
		if err != nil {
			u.errorPage(w, r, v, http.StatusBadRequest, "Bad link", "before must be an event sequence number.")
			return
		}
		d.Before = n
	}
	q := store.EventQuery{Before: d.Before, Limit: pageSize}
	if d.Type != "" {
		q.Types = []string{d.Type}
	}
	evs, next, err := u.opts.Catalog.EventsBefore(r.Context(), q)
	if err != nil {
		u.fail(w, r, v, err)
		return
	}
	d.Next = next
	for _, e := range evs {
		d.Rows = append(d.Rows, eventRowOf(e))
	}
	if d.Before == 0 {
		// The live stream continues after the newest event of any type.
		if top, _, err := u.opts.Catalog.EventsBefore(r.Context(), store.EventQuery{Limit: 1}); err == nil && len(top) > 0 {
			d.Top = top[0].Seq
		}
	}
	u.render(w, r, v, http.StatusOK, "events", "Events", d)
}

// eventStream sends new events as Server-Sent Events, rendered as table
// rows. Resumes from Last-Event-ID.
func (u *UI) eventStream(w http.ResponseWriter, r *http.Request, v *viewer) {
	var after uint64
	if s := r.Header.Get("Last-Event-ID"); s != "" {
		after, _ = strconv.ParseUint(s, 10, 64)
	} else if s := r.URL.Query().Get("after"); s != "" {
		after, _ = strconv.ParseUint(s, 10, 64)
	}
	typ := r.URL.Query().Get("type")
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, "retry: 2000\n\n")
	rc.Flush()
	// With a catalog that signals commits (store.EventNotify) the stream
	// wakes on each commit; otherwise it polls the log.
	notifier, _ := u.opts.Catalog.(eventNotifier)
	period := 250 * time.Millisecond
	if notifier != nil {
		period = 5 * time.Second // a safety net only
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	keepalive := time.Now()
	for {
		var changed <-chan struct{}
		if notifier != nil {
			changed = notifier.EventNotify() // before reading, so no commit is missed
		}
		evs, err := u.opts.Catalog.Events(r.Context(), after, 100)
		if err != nil {
			return
		}
		for _, e := range evs {
			after = e.Seq
			if typ != "" && e.Type != typ {
				continue
			}
			var buf strings.Builder
			if err := u.pages["events"].ExecuteTemplate(&buf, "event-row", eventRowOf(e)); err != nil {
				u.log.Error("ui event row", "err", err)
				return
			}
			fmt.Fprintf(w, "id: %d\nevent: row\ndata: %s\n\n", e.Seq, strings.ReplaceAll(buf.String(), "\n", ""))
		}
		if len(evs) > 0 || time.Since(keepalive) > 15*time.Second {
			if len(evs) == 0 {
				fmt.Fprint(w, ": keepalive\n\n")
			}
			keepalive = time.Now()
			if err := rc.Flush(); err != nil {
				return
			}
		}
		if len(evs) == 100 {
			continue
		}
		select {
		case <-r.Context().Done():
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// eventNotifier is a Catalog that can wake event streams: the channel is
// closed once a transaction that appended events commits after the call.
type eventNotifier interface {
	EventNotify() <-chan struct{}
}

// Tokens page.

type tokensData struct {
	Tokens  []store.Token
	Created string
	Record  *store.Token
	Error   string
	Form    tokenForm
}

type tokenForm struct{ Name, Scope, Producers, Expires string }

func (u *UI) tokensPage(w http.ResponseWriter, r *http.Request, v *viewer) {
	u.renderTokens(w, r, v, http.StatusOK, tokensData{Form: tokenForm{Scope: store.ScopeRead}})
}

func (u *UI) renderTokens(w http.ResponseWriter, r *http.Request, v *viewer, status int, d tokensData) {
	toks, err := u.opts.Tokens.ListTokens(r.Context())
	if err != nil {
		u.fail(w, r, v, err)
		return
	}
	d.Tokens = toks
	u.render(w, r, v, status, "tokens", "Tokens", d)
}

// parseExpiry reads a lifetime such as 30d, 12h or 90m; empty is none.
func parseExpiry(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 1 || days > 36500 {
			return 0, fmt.Errorf("expiry %q: days must be a whole number from 1 to 36500", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("expiry %q is not a lifetime such as 30d, 12h or 90m", s)
	}
	return d, nil
}

func (u *UI) createToken(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !u.checkCSRF(w, r, v) {
		return
	}
	f := tokenForm{Name: strings.TrimSpace(r.PostForm.Get("name")), Scope: r.PostForm.Get("scope"),
		Producers: strings.TrimSpace(r.PostForm.Get("producers")), Expires: strings.TrimSpace(r.PostForm.Get("expires"))}
	ttl, err := parseExpiry(f.Expires)
	if err != nil {
		u.renderTokens(w, r, v, http.StatusBadRequest, tokensData{Error: err.Error(), Form: f})
		return
	}
	var producers []string
	for _, p := range strings.FieldsFunc(f.Producers, func(r rune) bool { return r == ',' || r == ' ' }) {
		producers = append(producers, p)
	}
	secret, rec, err := u.opts.Tokens.CreateToken(r.Context(), f.Name, f.Scope, producers, ttl)
	if err != nil {
		u.renderTokens(w, r, v, http.StatusBadRequest, tokensData{Error: err.Error() + ".", Form: f})
		return
	}
	u.log.Info("ui token created", "by", v.token.ID, "token_id", rec.ID, "scope", rec.Scope)
	u.renderTokens(w, r, v, http.StatusCreated, tokensData{Created: secret, Record: rec, Form: tokenForm{Scope: store.ScopeRead}})
}

func (u *UI) revokeToken(w http.ResponseWriter, r *http.Request, v *viewer) {
	if !u.checkCSRF(w, r, v) {
		return
	}
	id := r.PathValue("id")
	if err := u.opts.Tokens.RevokeToken(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			u.renderTokens(w, r, v, http.StatusNotFound, tokensData{Error: "There is no token " + id + ".", Form: tokenForm{Scope: store.ScopeRead}})
			return
		}
		u.fail(w, r, v, err)
		return
	}
	u.log.Info("ui token revoked", "by", v.token.ID, "token_id", id)
	http.Redirect(w, r, Prefix+"tokens", http.StatusSeeOther)
}
