// Package web serves the HTTP API. It speaks of packages, files, digests,
// backends and locations only; it never sees how a backend stores bytes.
package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"artifactstore/internal/digest"
	"artifactstore/internal/logctx"
	"artifactstore/internal/manifest"
	"artifactstore/internal/registry"
	"artifactstore/store"
)

// Registry is what the API needs from the registry.
type Registry interface {
	Begin(ctx context.Context, m *manifest.Manifest) (*registry.BeginResult, error)
	Upload(ctx context.Context, sessionID string, d digest.Digest, size int64, body io.Reader) error
	Commit(ctx context.Context, sessionID string) (*store.Package, bool, error)
	Abort(ctx context.Context, sessionID string) error
	GetPackage(ctx context.Context, name, version string) (*registry.PackageView, error)
	Open(ctx context.Context, d digest.Digest, off, n int64) (io.ReadCloser, error)
	// Readable reports whether Open would have a location to try, without
	// asking a backend (what HEAD answers from).
	Readable(ctx context.Context, d digest.Digest) error
	Health(ctx context.Context) map[string]error
	Store() *store.Store
}

// Options configures the API.
type Options struct {
	// MaxBodyBytes bounds one uploaded file and one one-request publish.
	MaxBodyBytes int64
	// MaxManifestBytes bounds the JSON manifest of a publish.
	MaxManifestBytes int64
	// SpoolDir holds files of one-request publishes until they are hashed.
	SpoolDir string
	Logger   *slog.Logger
	// Ready reports whether the database is open; nil means always.
	Ready func(ctx context.Context) error
	// Metrics receives the HTTP metrics; nil registers nowhere.
	Metrics prometheus.Registerer
	// Auth resolves bearer tokens; required.
	Auth Authenticator
	// AnonymousRead lets requests without a token use read endpoints.
	AnonymousRead bool
	// MaxConcurrentUploads bounds uploads in flight, staged blob uploads
	// and one-request form publishes together; 0 means 64.
	MaxConcurrentUploads int
	// BodyReadTimeout cuts off a client whose request body stalls longer
	// than this between reads; 0 means 60s.
	BodyReadTimeout time.Duration
	// MinBodyRate is the least a client must send of a request body, in
	// bytes per second of waiting for it, measured over BodyRateWindow;
	// 0 turns the rate check off. A slower body is cut off (408), and
	// when the upload slots are full its slot goes to a new upload once
	// it has lagged for lagGrace(BodyRateWindow).
	MinBodyRate int64
	// BodyRateWindow is the span MinBodyRate is measured over; 0 means 30s.
	BodyRateWindow time.Duration
	// MaxFiles bounds the file parts of a one-request publish, so a form
	// is refused at the first part too many (server.max_files_per_package);
	// 0 means no bound here (the registry still checks).
	MaxFiles int
	// FormMemoryBytes bounds the memory all one-request form publishes
	// together may hold (small file parts and per-file bookkeeping);
	// beyond it parts go to the spool directory. 0 means 64 MiB.
	FormMemoryBytes int64
	// Deleter deletes packages; nil answers 501 to deletes.
	Deleter PackageDeleter
	// ProducerDelete lets a publish token of a package's producer delete
	// it; otherwise only admin tokens may.
	ProducerDelete bool
	// Events is the event log the event endpoints read; nil means the
	// registry's store.
	Events EventLog
	// MaxEventStreams bounds open GET /v1/events/stream connections; 0
	// means 256. StreamKeepalive is the idle comment interval; 0 means 15s.
	MaxEventStreams int
	StreamKeepalive time.Duration
	// Direct hands out direct download URLs; nil always proxies.
	Direct DirectLinker
}

// DirectLinker decides whether a download may go straight to the storage
// service (registry.(*Registry).DirectURL).
type DirectLinker interface {
	// DirectURL returns a time-limited URL that reads the whole blob d,
	// or "" when the API must proxy the bytes.
	DirectURL(ctx context.Context, d digest.Digest) (url, backend string, err error)
}

// Server is the HTTP API.
type Server struct {
	reg     Registry
	opts    Options
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *httpMetrics
	uploads *uploadSlots
	formMem *memBudget // shared by all form publishes
	spool   *spoolDir
	streams streams // live event streams (stream.go)
}

// New builds the API handler.
func New(reg Registry, opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 10 << 30
	}
	if opts.MaxManifestBytes <= 0 {
		opts.MaxManifestBytes = 4 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConcurrentUploads <= 0 {
		opts.MaxConcurrentUploads = 64
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = time.Minute
	}
	if opts.BodyRateWindow <= 0 {
		opts.BodyRateWindow = 30 * time.Second
	}
	if opts.FormMemoryBytes <= 0 {
		opts.FormMemoryBytes = 64 << 20
	}
	if opts.MaxEventStreams <= 0 {
		opts.MaxEventStreams = 256
	}
	if opts.StreamKeepalive <= 0 {
		opts.StreamKeepalive = 15 * time.Second
	}
	s := &Server{reg: reg, opts: opts, log: opts.Logger, mux: http.NewServeMux(), metrics: newHTTPMetrics(opts.Metrics),
		uploads: newUploadSlots(opts.MaxConcurrentUploads, lagGrace(opts.BodyRateWindow)),
		formMem: &memBudget{left: opts.FormMemoryBytes}, spool: newSpoolDir(opts.SpoolDir),
		streams: streams{stop: make(chan struct{}), sem: make(chan struct{}, opts.MaxEventStreams)}}
	s.routes()
	return s
}

func (s *Server) routes() {
	m := s.mux
	read, publish := store.ScopeRead, store.ScopePublish
	m.HandleFunc("GET /healthz", s.healthz)
	m.HandleFunc("GET /readyz", s.readyz)
	m.HandleFunc("POST /v1/uploads", s.authed(publish, s.begin))
	m.HandleFunc("PUT /v1/uploads/{id}/blobs/{digest}", s.authed(publish, s.upload))
	m.HandleFunc("POST /v1/uploads/{id}/commit", s.authed(publish, s.commit))
	m.HandleFunc("DELETE /v1/uploads/{id}", s.authed(publish, s.abort))
	m.HandleFunc("POST /v1/packages", s.authed(publish, s.publishForm))
	m.HandleFunc("GET /v1/packages", s.authed(read, s.listPackages))
	m.HandleFunc("GET /v1/packages/{name}", s.authed(read, s.listVersions))
	m.HandleFunc("GET /v1/packages/{name}/{version}", s.authed(read, s.getPackage))
	m.HandleFunc("DELETE /v1/packages/{name}/{version}", s.authed(publish, s.deletePackage))
	m.HandleFunc("GET /v1/packages/{name}/{version}/files/{path...}", s.authed(read, s.getFile))
	m.HandleFunc("GET /v1/blobs/{digest}", s.authed(read, s.getBlob))
	m.HandleFunc("GET /v1/events", s.authed(read, s.events))
	m.HandleFunc("GET /v1/events/stream", s.authed(read, s.eventStream))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, newErr(http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path))
	})
}

// Handle mounts an extra handler on the API's mux, guarded by scope
// ("open", read, publish or admin).
func (s *Server) Handle(pattern, scope string, h http.Handler) {
	s.mux.HandleFunc(pattern, s.authed(scope, h.ServeHTTP))
}

// ScopeOpen marks a route that needs no token (probes, metrics).
const ScopeOpen = scopeOpen

// ServeHTTP adds a request id and an access log line to every request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := r.Header.Get("X-Request-Id")
	if id == "" || len(id) > 64 {
		var b [8]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	log := s.log.With("request_id", id)
	r = r.WithContext(logctx.With(r.Context(), log))
	w.Header().Set("X-Request-Id", id)
	body := newCountingBody(w, r, s.opts.BodyReadTimeout, s.opts.MinBodyRate, s.opts.BodyRateWindow)
	rw := &recorder{ResponseWriter: w, status: http.StatusOK, body: body, proto1: r.ProtoMajor == 1}
	r.Body = body
	s.metrics.inFlight.Inc()
	// Deferred, so a handler that aborts its answer (panic with
	// http.ErrAbortHandler: a body cut short) is counted and logged too.
	defer func() {
		s.metrics.inFlight.Dec()
		took := time.Since(start)
		in := body.bytesRead()
		s.metrics.observe(r.Pattern, r.Method, rw.status, in, rw.n, took)
		log.Info("access", "method", r.Method, "path", r.URL.Path, "route", r.Pattern, "status", rw.status,
			"bytes_in", in, "bytes_out", rw.n, "duration_ms", took.Milliseconds(),
			"remote", r.RemoteAddr)
	}()
	if !cleanPath(r.URL.Path) {
		s.fail(rw, r, unknownPath(r))
	} else {
		s.mux.ServeHTTP(rw, r)
	}
}

func loggerFrom(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	return logctx.From(ctx, fallback)
}

type recorder struct {
	http.ResponseWriter
	status int
	n      int64
	wrote  bool
	// body is the request's body; an HTTP/1 answer to a request whose
	// body was cut off closes the connection (see closeIfCut).
	body   *countingBody
	proto1 bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status = code
		r.start()
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.start()
	n, err := r.ResponseWriter.Write(p)
	r.n += int64(n)
	return n, err
}

// start runs once, before the answer's headers go out.
func (r *recorder) start() {
	if !r.wrote {
		r.wrote = true
		r.closeIfCut()
	}
}

// closeIfCut asks net/http to close an HTTP/1 connection after this
// answer when the request's body was cut off, whatever the handler made
// of the cut (408 body_timeout; or 503 cancelled when its context ended
// first). A cut moved the connection's read deadline into the past, and
// one that raced the body's last bytes may have timed out net/http's
// background read, which cancels the connection's context: a later
// request on the connection would start cancelled. (HTTP/2 has neither
// the background read nor that context, and there Connection: close
// would end every stream of the connection.)
func (r *recorder) closeIfCut() {
	if r.proto1 && r.body != nil && r.body.wasCut() {
		r.Header().Set("Connection", "close")
	}
}

// ReadFrom keeps sendfile-style fast paths of the underlying writer.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.start()
	n, err := io.Copy(r.ResponseWriter, src)
	r.n += n
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Flush lets streaming answers (verification progress) reach the client.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		r.wrote = true
		f.Flush()
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers whether the database and every backend can serve. It
// names a backend that is down and nothing more: the probe needs no token,
// so error texts (endpoints, storage target names) go to the log and to the
// authenticated GET /v1/health. Backend health comes from the registry's
// short-lived cache, so a flood of probes does not become a flood of
// backend requests.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	log := loggerFrom(ctx, s.log)
	body := map[string]any{"status": "ready"}
	status := http.StatusOK
	if s.opts.Ready != nil {
		if err := s.opts.Ready(ctx); err != nil {
			log.Warn("readiness: database not ready", "err", err)
			status = http.StatusServiceUnavailable
			body["status"] = "not_ready"
			body["database"] = "unavailable"
		}
	}
	down := map[string]string{}
	for id, err := range s.reg.Health(ctx) {
		log.Warn("readiness: backend down", "backend", id, "err", err)
		down[id] = "down"
	}
	if len(down) > 0 {
		status = http.StatusServiceUnavailable
		body["status"] = "not_ready"
		body["backends_down"] = down
	}
	writeJSON(w, status, body)
}

// takeUploadSlot holds one of server.max_concurrent_uploads until the
// request ends, or answers 503 too_many_uploads.
func (s *Server) takeUploadSlot(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	body, _ := r.Body.(*countingBody)
	slot, ok := s.uploads.acquire(body)
	if !ok {
		w.Header().Set("Retry-After", "1")
		s.fail(w, r, newErr(http.StatusServiceUnavailable, "too_many_uploads",
			fmt.Sprintf("%d uploads are in flight (server.max_concurrent_uploads); retry shortly", s.uploads.max)))
		return nil, false
	}
	return func() { s.uploads.release(slot) }, true
}

// beginResponse answers POST /v1/uploads.
type beginResponse struct {
	Status       string                `json:"status"` // "open" or "exists"
	UploadID     string                `json:"upload_id,omitempty"`
	ExpiresAt    *time.Time            `json:"expires_at,omitempty"`
	Backend      string                `json:"backend"`
	Needed       []registry.NeededFile `json:"needed"`
	SkippedBytes int64                 `json:"skipped_bytes"`
	UploadURL    string                `json:"upload_url,omitempty"`
	CommitURL    string                `json:"commit_url,omitempty"`
	Package      *packageJSON          `json:"package,omitempty"`
	// Repair: the package exists, but content listed in needed failed
	// verification on this backend; uploading it rewrites the objects.
	Repair bool `json:"repair,omitempty"`
}

func (s *Server) begin(w http.ResponseWriter, r *http.Request) {
	m, err := manifest.Decode(r.Body, s.opts.MaxManifestBytes)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !s.mayPublishAs(w, r, m.Producer) {
		return
	}
	for i, f := range m.Files {
		if f.Size > s.opts.MaxBodyBytes {
			s.fail(w, r, newErr(http.StatusRequestEntityTooLarge, "body_too_large",
				fmt.Sprintf("files[%d] %q: %d bytes exceed the limit of %d bytes per file (server.max_body_bytes)", i, f.Path, f.Size, s.opts.MaxBodyBytes)))
			return
		}
	}
	res, err := s.reg.Begin(r.Context(), m)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if res.Existing != nil {
		view, err := s.reg.GetPackage(r.Context(), res.Existing.Name, res.Existing.Version)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, beginResponse{Status: "exists", Backend: res.Backend, Needed: []registry.NeededFile{}, Package: viewJSON(view)})
		return
	}
	id := res.Session.ID
	exp := res.Session.ExpiresAt
	writeJSON(w, http.StatusCreated, beginResponse{
		Status: "open", UploadID: id, ExpiresAt: &exp, Backend: res.Backend,
		Needed: res.Needed, SkippedBytes: res.SkippedBytes, Repair: res.Repair,
		UploadURL: "/v1/uploads/" + id + "/blobs/{digest}",
		CommitURL: "/v1/uploads/" + id + "/commit",
	})
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	producer, ok := s.sessionProducer(w, r)
	if !ok || !s.mayPublishAs(w, r, producer) {
		return
	}
	release, ok := s.takeUploadSlot(w, r)
	if !ok {
		return
	}
	defer release()
	d, err := digest.Parse(r.PathValue("digest"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if r.ContentLength < 0 {
		s.fail(w, r, newErr(http.StatusLengthRequired, "length_required", "an upload needs a Content-Length header"))
		return
	}
	if r.ContentLength > s.opts.MaxBodyBytes {
		s.fail(w, r, &http.MaxBytesError{Limit: s.opts.MaxBodyBytes})
		return
	}
	body := clientBody{http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)}
	if err := s.reg.Upload(r.Context(), r.PathValue("id"), d, r.ContentLength, body); err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"digest": d.String(), "size": r.ContentLength})
}

func (s *Server) commit(w http.ResponseWriter, r *http.Request) {
	producer, ok := s.sessionProducer(w, r)
	if !ok || !s.mayPublishAs(w, r, producer) {
		return
	}
	pkg, created, err := s.reg.Commit(r.Context(), r.PathValue("id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeCommitted(w, r, pkg, created)
}

// writeCommitted answers a commit with the package and its locations:
// 201 when this request created it, 200 when it existed already.
func (s *Server) writeCommitted(w http.ResponseWriter, r *http.Request, pkg *store.Package, created bool) {
	view, err := s.reg.GetPackage(r.Context(), pkg.Name, pkg.Version)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK
	}
	w.Header().Set("Location", "/v1/packages/"+pkg.Name+"/"+pkg.Version)
	writeJSON(w, status, viewJSON(view))
}

func (s *Server) abort(w http.ResponseWriter, r *http.Request) {
	producer, ok := s.sessionProducer(w, r)
	if !ok || !s.mayPublishAs(w, r, producer) {
		return
	}
	if err := s.reg.Abort(r.Context(), r.PathValue("id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// locationJSON is one place a file's content is stored.
type locationJSON struct {
	Backend        string     `json:"backend"`
	Status         string     `json:"status"`
	StoredAt       time.Time  `json:"stored_at"`
	LastVerifiedAt *time.Time `json:"last_verified_at"`
}

type fileJSON struct {
	Path      string         `json:"path"`
	Size      int64          `json:"size"`
	SHA256    string         `json:"sha256"`
	Digest    string         `json:"digest"`
	MediaType string         `json:"media_type"`
	Locations []locationJSON `json:"locations,omitempty"`
	// PendingCopies names the backends whose copy the package's routing
	// rule asks for and that is not written yet (min_copies).
	PendingCopies []string `json:"pending_copies,omitempty"`
}

type packageJSON struct {
	Name           string            `json:"name"`
	Version        string            `json:"version"`
	Producer       string            `json:"producer"`
	RetentionClass string            `json:"retention_class"`
	Labels         map[string]string `json:"labels"`
	CreatedAt      time.Time         `json:"created_at"`
	Files          []fileJSON        `json:"files,omitempty"` // omitted in listings
	FileCount      int               `json:"file_count"`
	TotalBytes     int64             `json:"total_bytes"`
}

func packageSummary(p *store.Package, withFiles bool) *packageJSON {
	out := &packageJSON{Name: p.Name, Version: p.Version, Producer: p.Producer,
		RetentionClass: p.RetentionClass, Labels: p.Labels, CreatedAt: p.CreatedAt, FileCount: len(p.Files)}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for _, f := range p.Files {
		out.TotalBytes += f.Size
		if withFiles {
			out.Files = append(out.Files, fileJSON{Path: f.Path, Size: f.Size, SHA256: strings.TrimPrefix(f.Digest, "sha256:"),
				Digest: f.Digest, MediaType: f.MediaType})
		}
	}
	return out
}

func viewJSON(v *registry.PackageView) *packageJSON {
	out := packageSummary(v.Package, true)
	for i := range out.Files {
		for _, l := range v.Locations[out.Files[i].Digest] {
			out.Files[i].Locations = append(out.Files[i].Locations, locationJSON{
				Backend: l.Backend, Status: l.Status, StoredAt: l.StoredAt, LastVerifiedAt: l.LastVerifiedAt})
		}
		out.Files[i].PendingCopies = v.Pending[out.Files[i].Digest]
	}
	if out.Files == nil {
		out.Files = []fileJSON{}
	}
	return out
}

func (s *Server) getPackage(w http.ResponseWriter, r *http.Request) {
	view, err := s.reg.GetPackage(r.Context(), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewJSON(view))
}

func (s *Server) getFile(w http.ResponseWriter, r *http.Request) {
	p, err := s.reg.Store().GetPackage(r.Context(), r.PathValue("name"), r.PathValue("version"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	path := r.PathValue("path")
	for _, f := range p.Files {
		if f.Path == path {
			d, err := digest.Parse(f.Digest)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			s.serveContent(w, r, d, f.Size, f.MediaType)
			return
		}
	}
	s.fail(w, r, newErr(http.StatusNotFound, "not_found", fmt.Sprintf("package %s@%s has no file %q", p.Name, p.Version, path)))
}

func (s *Server) getBlob(w http.ResponseWriter, r *http.Request) {
	d, err := digest.Parse(r.PathValue("digest"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	b, err := s.reg.Store().GetBlob(r.Context(), d.String())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.serveContent(w, r, d, b.Size, "application/octet-stream")
}

// serveContent writes a blob with ETag, Repr-Digest, conditional requests
// and single byte ranges. HEAD gets the headers only.
func (s *Server) serveContent(w http.ResponseWriter, r *http.Request, d digest.Digest, size int64, mediaType string) {
	etag := `"` + d.String() + `"`
	h := w.Header()
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, etag) {
		s.contentHeaders(h, d, etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	off, n, status := int64(0), size, http.StatusOK
	if len(r.Header.Values("Range")) > 1 {
		s.fail(w, r, newErr(http.StatusBadRequest, "invalid_range", "more than one Range header; send one Range with one byte range"))
		return
	}
	rangeHdr := r.Header.Get("Range")
	if ir := r.Header.Get("If-Range"); ir != "" && ir != etag {
		rangeHdr = ""
	}
	if rangeHdr != "" {
		br, ok, err := parseRange(rangeHdr, size)
		if err != nil {
			h.Set("Content-Range", "bytes */"+itoa(size))
			s.fail(w, r, newErr(http.StatusRequestedRangeNotSatisfiable, "range_not_satisfiable",
				fmt.Sprintf("range %q selects nothing of %d bytes", rangeHdr, size)))
			return
		}
		if ok {
			off, n, status = br.Start, br.Length, http.StatusPartialContent
			h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size))
		}
	}
	if r.Method == http.MethodHead {
		// The registry knows the size and where the bytes are: HEAD does
		// not open a backend.
		if err := s.reg.Readable(r.Context(), d); err != nil {
			s.fail(w, r, err)
			return
		}
		s.contentHeaders(h, d, etag)
		h.Set("Content-Type", mediaType)
		h.Set("Content-Length", itoa(n))
		w.WriteHeader(status)
		return
	}
	if status == http.StatusOK && s.opts.Direct != nil && s.redirect(w, r, d) {
		return
	}
	rc, err := s.reg.Open(r.Context(), d, off, n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer rc.Close()
	s.contentHeaders(h, d, etag)
	h.Set("Content-Type", mediaType)
	h.Set("Content-Length", itoa(n))
	w.WriteHeader(status)
	// copy the body
	if _, ok := rc.(io.WriterTo); ok {
		// The backend's fast path (sendfile for local files), or the
		// registry's verified read hashing on another goroutine.
		_, err = io.Copy(w, rc)
	} else {
		_, err = io.CopyBuffer(writerOnly{w}, rc, make([]byte, 1<<20))
	}
	if err != nil {
		// The status is sent; all that is left is to make the answer
		// visibly incomplete. On HTTP/1 returning does it: net/http sends
		// what was written and closes the connection, the body short of
		// its Content-Length. HTTP/2 would end the stream cleanly instead,
		// so there the handler aborts, which resets the stream: no client
		// or proxy takes the short body for the whole.
		loggerFrom(r.Context(), s.log).Warn("response body aborted", "digest", d.String(), "err", err)
		if r.ProtoMajor >= 2 {
			panic(http.ErrAbortHandler)
		}
	}
}

// contentHeaders sets the headers of an answer that carries the content
// (200, 206) or vouches for it (304): its digest as ETag and Repr-Digest,
// byte ranges, and caching for a year (it never changes). Error answers
// and redirects never carry them: a cache must not keep a passing
// failure as the immutable content.
func (s *Server) contentHeaders(h http.Header, d digest.Digest, etag string) {
	h.Set("ETag", etag)
	// Constant values share one slice each (keys in canonical form; an Add
	// to such a slice copies it, since its capacity is its length): a HEAD
	// is answered in microseconds, so a handful of allocations is visible.
	h["Accept-Ranges"] = hdrBytes
	// Content under a digest never changes, but unless anyone may read it a
	// shared cache must not hand it to a client without a token.
	if s.opts.AnonymousRead {
		h["Cache-Control"] = hdrCachePublic
	} else {
		h["Cache-Control"] = hdrCachePrivate
		h.Add("Vary", "Authorization")
	}
	if rd, ok := reprDigest(d); ok {
		h.Set("Repr-Digest", rd)
	}
}

var (
	hdrBytes        = []string{"bytes"}
	hdrCachePublic  = []string{"public, max-age=31536000, immutable"}
	hdrCachePrivate = []string{"private, max-age=31536000, immutable"}
)

// reprDigest is the Repr-Digest field value of d (RFC 9530:
// "sha-256=:<base64 of the digest>:"), built with one allocation.
func reprDigest(d digest.Digest) (string, bool) {
	var raw [sha256.Size]byte
	var hx [2 * sha256.Size]byte
	if len(d.Hex) != len(hx) {
		return "", false
	}
	copy(hx[:], d.Hex)
	if _, err := hex.Decode(raw[:], hx[:]); err != nil {
		return "", false
	}
	const prefix = "sha-256=:"
	var out [len(prefix) + 44 + 1]byte // base64 of 32 bytes is 44 characters
	copy(out[:], prefix)
	base64.StdEncoding.Encode(out[len(prefix):], raw[:])
	out[len(out)-1] = ':'
	return string(out[:]), true
}

// redirect answers a whole-content GET with 307 to a direct URL of the
// storage service when Options.Direct hands one out (a recently verified
// location on a backend with direct downloads on). Repr-Digest stays on
// the answer so the client can check what it reads there; the answer
// itself must not be cached (the URL expires). It reports whether it
// answered.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, d digest.Digest) bool {
	u, backend, err := s.opts.Direct.DirectURL(r.Context(), d)
	if err != nil {
		s.fail(w, r, err)
		return true
	}
	if u == "" {
		return false
	}
	h := w.Header()
	if rd, ok := reprDigest(d); ok {
		h.Set("Repr-Digest", rd) // so the client can check what it fetches
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Location", u)
	loggerFrom(r.Context(), s.log).Debug("download redirected to the storage service", "digest", d.String(), "backend", backend)
	w.WriteHeader(http.StatusTemporaryRedirect)
	return true
}

// writerOnly hides ReadFrom so CopyBuffer uses our large buffer.
type writerOnly struct{ io.Writer }

func etagMatch(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || t == etag || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

func limitParam(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1000 {
		return 0, newErr(http.StatusBadRequest, "invalid_limit", "limit must be an integer from 1 to 1000")
	}
	return n, nil
}

func (s *Server) listPackages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := limitParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	f := store.Filter{Name: q.Get("name"), Producer: q.Get("producer"), RetentionClass: q.Get("retention_class")}
	for _, l := range q["label"] {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			s.fail(w, r, newErr(http.StatusBadRequest, manifest.CodeInvalidLabel, "label filter must be key=value"))
			return
		}
		if f.Labels == nil {
			f.Labels = map[string]string{}
		}
		f.Labels[k] = v
	}
	page, err := s.reg.Store().ListPackages(r.Context(), f, q.Get("cursor"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writePage(w, "packages", page)
}

func writePage(w http.ResponseWriter, key string, page store.Page) {
	items := make([]*packageJSON, 0, len(page.Packages))
	for _, p := range page.Packages {
		items = append(items, packageSummary(p, false))
	}
	writeJSON(w, http.StatusOK, map[string]any{key: items, "next_cursor": page.Next})
}

func (s *Server) listVersions(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	name := r.PathValue("name")
	if err := manifest.ValidateName(name); err != nil {
		s.fail(w, r, err)
		return
	}
	page, err := s.reg.Store().ListVersions(r.Context(), name, r.URL.Query().Get("cursor"), limit)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(page.Packages) == 0 && r.URL.Query().Get("cursor") == "" {
		s.fail(w, r, newErr(http.StatusNotFound, "not_found", "no package named "+name))
		return
	}
	writePage(w, "versions", page)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if v := r.URL.Query().Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			s.fail(w, r, newErr(http.StatusBadRequest, "invalid_after", "after must be a non-negative integer sequence number"))
			return
		}
		after = n
	}
	limit, err := limitParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var evs []store.Event
	next := after
	if types := r.URL.Query()["type"]; len(types) > 0 {
		evs, next, err = s.reg.Store().EventsOfTypes(r.Context(), after, limit, types)
	} else {
		evs, err = s.reg.Store().Events(r.Context(), after, limit)
		if len(evs) > 0 {
			next = evs[len(evs)-1].Seq
		}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if evs == nil {
		evs = []store.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs, "next_after": next})
}

// clientBody marks errors reading the request body as the client's, so a
// stalled or vanished client is not reported as a failing backend.
type clientBody struct{ r io.Reader }

func (c clientBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = &bodyReadError{err}
	}
	return n, err
}

type bodyReadError struct{ err error }

func (e *bodyReadError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *bodyReadError) Unwrap() error { return e.err }
