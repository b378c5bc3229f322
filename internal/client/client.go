// Package client talks to an artifactstore server over its HTTP API. The
// command-line client and the end-to-end tests both use it.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error is an API error response.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Backend string `json:"backend,omitempty"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Code returns the API error code of err, or "" if it is not an *Error.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// Client is safe for concurrent use.
type Client struct {
	Base  string
	HTTP  *http.Client
	Token string
}

// New returns a client for base, e.g. "http://127.0.0.1:8080". Its
// transport keeps enough idle connections for parallel transfers (the
// default keeps two per host, so a parallel push would reconnect on almost
// every request).
func New(base string) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 64
	t.WriteBufferSize = 256 << 10
	t.ReadBufferSize = 256 << 10
	return &Client{Base: strings.TrimRight(base, "/"), HTTP: &http.Client{Transport: t}}
}

// File declares one file of a manifest.
type File struct {
	Path      string `json:"path"`
	Size      int64  `json:"size"`
	SHA256    string `json:"sha256"`
	MediaType string `json:"media_type,omitempty"`
}

// Manifest is what Begin sends.
type Manifest struct {
	Name           string            `json:"name"`
	Version        string            `json:"version"`
	Producer       string            `json:"producer"`
	RetentionClass string            `json:"retention_class"`
	Labels         map[string]string `json:"labels,omitempty"`
	Files          []File            `json:"files"`
}

// Needed is a file the server asks for.
type Needed struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// BeginResponse answers Begin.
type BeginResponse struct {
	Status       string     `json:"status"`
	UploadID     string     `json:"upload_id"`
	ExpiresAt    *time.Time `json:"expires_at"`
	Backend      string     `json:"backend"`
	Needed       []Needed   `json:"needed"`
	SkippedBytes int64      `json:"skipped_bytes"`
	Package      *Package   `json:"package"`
	// Repair: the package exists and Needed is content that failed
	// verification on the server; uploading it repairs the objects.
	Repair bool `json:"repair"`
}

// Location is where a file's content is stored.
type Location struct {
	Backend        string     `json:"backend"`
	Status         string     `json:"status"`
	StoredAt       time.Time  `json:"stored_at"`
	LastVerifiedAt *time.Time `json:"last_verified_at"`
}

// PackageFile is a file of a committed package.
type PackageFile struct {
	Path      string     `json:"path"`
	Size      int64      `json:"size"`
	SHA256    string     `json:"sha256"`
	Digest    string     `json:"digest"`
	MediaType string     `json:"media_type"`
	Locations []Location `json:"locations"`
}

// Package is a committed package.
type Package struct {
	Name           string            `json:"name"`
	Version        string            `json:"version"`
	Producer       string            `json:"producer"`
	RetentionClass string            `json:"retention_class"`
	Labels         map[string]string `json:"labels"`
	CreatedAt      time.Time         `json:"created_at"`
	Files          []PackageFile     `json:"files"`
	FileCount      int               `json:"file_count"`
	TotalBytes     int64             `json:"total_bytes"`
}

// do sends a request and decodes a JSON answer into out (if non-nil). It
// returns the status code; an error status yields an *Error.
func (c *Client) do(ctx context.Context, method, path string, hdr http.Header, body io.Reader, size int64, out any) (int, error) {
	if body != nil && size == 0 {
		body = http.NoBody // a zero ContentLength with a body would be sent chunked
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.ContentLength = size
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() {
		// Read to EOF so the connection goes back to the pool.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode >= 400 {
		return resp.StatusCode, decodeError(resp)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.StatusCode, nil
}

func decodeError(resp *http.Response) error {
	var env struct {
		Error *Error `json:"error"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if json.Unmarshal(raw, &env) == nil && env.Error != nil {
		env.Error.Status = resp.StatusCode
		return env.Error
	}
	return &Error{Status: resp.StatusCode, Code: "http_" + strconv.Itoa(resp.StatusCode), Message: strings.TrimSpace(string(raw))}
}

// Begin starts a staged publish.
func (c *Client) Begin(ctx context.Context, m Manifest) (*BeginResponse, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out BeginResponse
	_, err = c.do(ctx, http.MethodPost, "/v1/uploads", http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(raw), int64(len(raw)), &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// Upload sends one needed file's bytes.
func (c *Client) Upload(ctx context.Context, uploadID, sha256hex string, size int64, body io.Reader) error {
	_, err := c.do(ctx, http.MethodPut, "/v1/uploads/"+url.PathEscape(uploadID)+"/blobs/sha256:"+sha256hex,
		http.Header{"Content-Type": {"application/octet-stream"}}, body, size, nil)
	return err
}

// Commit makes the package visible; created is false when it existed.
func (c *Client) Commit(ctx context.Context, uploadID string) (*Package, bool, error) {
	var p Package
	status, err := c.do(ctx, http.MethodPost, "/v1/uploads/"+url.PathEscape(uploadID)+"/commit", nil, nil, 0, &p)
	if err != nil {
		return nil, false, err
	}
	return &p, status == http.StatusCreated, nil
}

// Abort drops an upload session.
func (c *Client) Abort(ctx context.Context, uploadID string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/uploads/"+url.PathEscape(uploadID), nil, nil, 0, nil)
	return err
}

// GetPackage fetches a manifest with locations.
func (c *Client) GetPackage(ctx context.Context, name, version string) (*Package, error) {
	var p Package
	_, err := c.do(ctx, http.MethodGet, "/v1/packages/"+url.PathEscape(name)+"/"+url.PathEscape(version), nil, nil, 0, &p)
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// ListOptions filters List.
type ListOptions struct {
	Name, Producer, RetentionClass string
	Labels                         map[string]string
	Cursor                         string
	Limit                          int
}

// List returns one page of packages and the next cursor ("" at the end).
func (c *Client) List(ctx context.Context, o ListOptions) ([]Package, string, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("name", o.Name)
	set("producer", o.Producer)
	set("retention_class", o.RetentionClass)
	set("cursor", o.Cursor)
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	for k, v := range o.Labels {
		q.Add("label", k+"="+v)
	}
	var out struct {
		Packages []Package `json:"packages"`
		Next     string    `json:"next_cursor"`
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/packages?"+q.Encode(), nil, nil, 0, &out)
	return out.Packages, out.Next, err
}

// Versions lists a name's versions, newest first.
func (c *Client) Versions(ctx context.Context, name, cursor string, limit int) ([]Package, string, error) {
	q := url.Values{}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Versions []Package `json:"versions"`
		Next     string    `json:"next_cursor"`
	}
	_, err := c.do(ctx, http.MethodGet, "/v1/packages/"+url.PathEscape(name)+"?"+q.Encode(), nil, nil, 0, &out)
	return out.Versions, out.Next, err
}

// Event is one registry event.
type Event struct {
	Seq     uint64          `json:"seq"`
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Source  string          `json:"source"`
	Time    time.Time       `json:"time"`
	Subject string          `json:"subject"`
	Data    json.RawMessage `json:"data"`
}

// Events returns events after seq.
func (c *Client) Events(ctx context.Context, after uint64, limit int) ([]Event, error) {
	var out struct {
		Events []Event `json:"events"`
	}
	path := "/v1/events?after=" + strconv.FormatUint(after, 10)
	if limit > 0 {
		path += "&limit=" + strconv.Itoa(limit)
	}
	_, err := c.do(ctx, http.MethodGet, path, nil, nil, 0, &out)
	return out.Events, err
}

// FilePath returns the API path of a file in a package.
func FilePath(name, version, path string) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/v1/packages/" + url.PathEscape(name) + "/" + url.PathEscape(version) + "/files/" + strings.Join(segs, "/")
}

// Get performs a GET with optional headers and returns the raw response;
// the caller closes its body. Error statuses are returned as responses.
func (c *Client) Get(ctx context.Context, path string, hdr http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+path, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := *c.HTTP
	hc.CheckRedirect = keepCredentialsHome
	return hc.Do(req)
}

// keepCredentialsHome follows at most 10 redirects and never sends our
// token to another origin (scheme, host and port): a download may be
// redirected to a storage service's time-limited URL, which must be
// fetched without it. (net/http itself would forward the header to
// another port of the same host.)
func keepCredentialsHome(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if first := via[0].URL; req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		req.Header.Del("Authorization")
	}
	return nil
}

// DeleteResult answers a package delete.
type DeleteResult struct {
	Deleted Package `json:"deleted"`
	Reason  string  `json:"reason"`
	By      string  `json:"by"`
}

// Delete deletes name@version for reason (admin token, or a publish token
// of the producer when the server allows it).
func (c *Client) Delete(ctx context.Context, name, version, reason string) (*DeleteResult, error) {
	raw, err := json.Marshal(map[string]string{"reason": reason})
	if err != nil {
		return nil, err
	}
	var out DeleteResult
	_, err = c.do(ctx, http.MethodDelete, "/v1/packages/"+url.PathEscape(name)+"/"+url.PathEscape(version),
		http.Header{"Content-Type": {"application/json"}}, bytes.NewReader(raw), int64(len(raw)), &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}
