package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"

	"artifactstore/backends"
	"artifactstore/backends/backendtest"
	"artifactstore/backends/s3"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/digest"
)

const (
	testChunk     = 5 << 20
	testThreshold = 5 << 20
)

var prefixSeq atomic.Int64

func newBackend(t *testing.T, cfg s3.Config, prefix string) *s3.Backend {
	t.Helper()
	b, err := s3.New("s3-test", cfg, prefix, s3.Resolver{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConformance runs the shared backend suite, unchanged, on every real
// S3 server.
func TestConformance(t *testing.T) {
	for _, srv := range s3test.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cfg := srv.NewBucket(t)
			cfg.MultipartThresholdBytes = testThreshold
			cfg.MultipartChunkBytes = testChunk
			client := srv.Client(t)
			backendtest.Run(t, func(t *testing.T) backends.Backend {
				return newBackend(t, cfg, fmt.Sprintf("conf%d", prefixSeq.Add(1)))
			}, backendtest.Options{
				LargeSize: 2*testChunk + 1234, // three parts
				Overwrite: func(t *testing.T, b backends.Backend, d digest.Digest, raw []byte) {
					sb := b.(*s3.Backend)
					if _, err := client.Client.PutObject(context.Background(), cfg.Bucket, sb.Key(d), bytes.NewReader(raw), int64(len(raw)), minio.PutObjectOptions{}); err != nil {
						t.Fatal(err)
					}
				},
				AfterFailedPut: func(t *testing.T, b backends.Backend) {
					sb := b.(*s3.Backend)
					if left := s3test.IncompleteUploads(t, client, cfg.Bucket, ""); len(left) > 0 {
						t.Fatalf("%s: incomplete multipart uploads left behind: %v (backend %s)", srv.Name, left, sb.ID())
					}
				},
			})
		})
	}
}

// TestMultipartOnlyAboveThreshold reads the part count from the stored
// object's ETag ("<md5>-<parts>" for a multipart upload).
func TestMultipartOnlyAboveThreshold(t *testing.T) {
	for _, srv := range s3test.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cfg := srv.NewBucket(t)
			cfg.MultipartThresholdBytes = 6 << 20
			cfg.MultipartChunkBytes = 5 << 20
			b := newBackend(t, cfg, "mp")
			client := srv.Client(t)
			cases := []struct {
				size  int64
				parts int // 0: single PUT
			}{
				{6 << 20, 0},      // at the threshold: one PUT
				{6<<20 + 1, 2},    // just above: 5 MiB + 1 MiB+1
				{15 << 20, 3},     // exact multiple of the chunk
				{15<<20 + 100, 4}, // one byte more than a multiple
			}
			for i, c := range cases {
				data, d := backendtest.Blob(uint64(500+i), c.size)
				if err := b.Put(context.Background(), d, c.size, bytes.NewReader(data)); err != nil {
					t.Fatalf("put %d bytes: %v", c.size, err)
				}
				info, err := client.StatObject(context.Background(), cfg.Bucket, b.Key(d), minio.StatObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				etag := strings.Trim(info.ETag, `"`)
				_, partsStr, multipart := strings.Cut(etag, "-")
				switch {
				case c.parts == 0 && multipart:
					t.Fatalf("%d bytes (threshold %d): ETag %q says multipart", c.size, cfg.MultipartThresholdBytes, etag)
				case c.parts > 0 && partsStr != fmt.Sprint(c.parts):
					t.Fatalf("%d bytes: ETag %q, want %d parts", c.size, etag, c.parts)
				}
				if info.Size != c.size {
					t.Fatalf("stored size %d, want %d", info.Size, c.size)
				}
			}
		})
	}
}

// TestPutOptionsApplied checks storage_class and sse reach the server.
func TestPutOptionsApplied(t *testing.T) {
	for _, srv := range s3test.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cfg := srv.NewBucket(t)
			cfg.StorageClass = "STANDARD"
			b := newBackend(t, cfg, "opts")
			data, d := backendtest.Blob(600, 1000)
			if err := b.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data)); err != nil {
				t.Fatalf("put with storage_class STANDARD: %v", err)
			}
			info, err := srv.Client(t).StatObject(context.Background(), cfg.Bucket, b.Key(d), minio.StatObjectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if info.StorageClass != "" && info.StorageClass != "STANDARD" {
				t.Fatalf("storage class %q", info.StorageClass)
			}
			// sse-s3 reaches the server: each test server answers it in its
			// own known way (docs/OPERATOR.md has the table). A server that
			// changes its answer fails here, so the table stays true.
			cfg.SSE = "sse-s3"
			sb := newBackend(t, cfg, "sse")
			err = sb.Put(context.Background(), d, int64(len(data)), bytes.NewReader(data))
			t.Logf("%s: sse-s3 put: %v", srv.Name, err)
			var header string
			if err == nil {
				info, err := srv.Client(t).StatObject(context.Background(), cfg.Bucket, sb.Key(d), minio.StatObjectOptions{})
				if err != nil {
					t.Fatal(err)
				}
				header = info.Metadata.Get("X-Amz-Server-Side-Encryption")
				t.Logf("%s: sse-s3 object header x-amz-server-side-encryption=%q", srv.Name, header)
			}
			switch srv.Name {
			case "versitygw": // accepts the header and ignores it
				if err != nil || header != "" {
					t.Fatalf("versitygw sse-s3: err %v, header %q; want accepted and ignored", err, header)
				}
			case "minio": // refuses without a KMS
				if err == nil || !strings.Contains(err.Error(), "KMS") {
					t.Fatalf("minio sse-s3: %v; want refused for lack of a KMS", err)
				}
			case "ceph": // RGW 16.2 without a configured key store refuses
				if err == nil || !strings.Contains(err.Error(), "InvalidRequest") {
					t.Fatalf("ceph sse-s3: %v; want InvalidRequest", err)
				}
			}
			if err != nil {
				if _, serr := sb.Stat(context.Background(), d); !errors.Is(serr, backends.ErrNotFound) {
					t.Fatalf("a refused sse put left an object: %v", serr)
				}
			}
		})
	}
}

func TestWrongCredentialsAreUnavailable(t *testing.T) {
	for _, srv := range s3test.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cfg := srv.NewBucket(t)
			t.Setenv("WRONG_SECRET", "definitely-not-the-secret")
			cfg.SecretKeyRef = "env:WRONG_SECRET"
			cfg.MaxRetries = 1
			b := newBackend(t, cfg, "x")
			err := b.Health(context.Background())
			if !errors.Is(err, backends.ErrUnavailable) {
				t.Fatalf("health with a wrong secret: %v, want ErrUnavailable", err)
			}
			if strings.Contains(err.Error(), "definitely-not-the-secret") {
				t.Fatalf("error reveals the secret: %v", err)
			}
		})
	}
}

func TestMissingBucketIsUnavailable(t *testing.T) {
	for _, srv := range s3test.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cfg := srv.NewBucket(t)
			cfg.Bucket = "no-such-bucket-artifactstore"
			b := newBackend(t, cfg, "x")
			if err := b.Health(context.Background()); !errors.Is(err, backends.ErrUnavailable) {
				t.Fatalf("health of a missing bucket: %v", err)
			}
		})
	}
}

func TestDownServerIsUnavailable(t *testing.T) {
	t.Setenv("K", "key")
	b := newBackend(t, s3.Config{EndpointURL: "http://127.0.0.1:1", Bucket: "bucket", AccessKeyRef: "env:K", SecretKeyRef: "env:K", MaxRetries: 1}, "x")
	if err := b.Health(context.Background()); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("health of a closed port: %v", err)
	}
	_, d := backendtest.Blob(1, 10)
	if _, err := b.Stat(context.Background(), d); !errors.Is(err, backends.ErrUnavailable) {
		t.Fatalf("stat on a closed port: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	base := func() s3.Config {
		c := s3.Config{EndpointURL: "http://127.0.0.1:7480", Bucket: "artifacts", AccessKeyRef: "env:A", SecretKeyRef: "file:/run/secrets/s"}
		c.SetDefaults()
		return c
	}
	cases := []struct {
		key string
		mod func(c *s3.Config)
	}{
		{"endpoint_url", func(c *s3.Config) { c.EndpointURL = "ftp://x" }},
		{"endpoint_url", func(c *s3.Config) { c.EndpointURL = "" }},
		{"endpoint_url", func(c *s3.Config) { c.EndpointURL = "http://h/path" }},
		{"bucket", func(c *s3.Config) { c.Bucket = "Upper" }},
		{"bucket", func(c *s3.Config) { c.Bucket = "ab" }},
		{"bucket", func(c *s3.Config) { c.Bucket = "192.168.1.1" }},
		{"bucket", func(c *s3.Config) { c.Bucket = "a..b" }},
		{"bucket", func(c *s3.Config) { c.Bucket = "-ab" }},
		{"access_key_ref", func(c *s3.Config) { c.AccessKeyRef = "AKIAIOSFODNN7EXAMPLE" }},
		{"secret_key_ref", func(c *s3.Config) { c.SecretKeyRef = "file:relative/path" }},
		{"sse", func(c *s3.Config) { c.SSE = "sse-c" }},
		{"multipart_chunk_bytes", func(c *s3.Config) { c.MultipartChunkBytes = 1 << 20 }},
		{"multipart_chunk_bytes", func(c *s3.Config) { c.MultipartChunkBytes = 6 << 30 }},
		{"multipart_threshold_bytes", func(c *s3.Config) { c.MultipartThresholdBytes = 6 << 30 }},
		{"multipart_parts_in_flight", func(c *s3.Config) { c.MultipartPartsInFlight = -1 }},
		{"multipart_parts_in_flight", func(c *s3.Config) { c.MultipartPartsInFlight = 17 }},
		{"bucket_lookup", func(c *s3.Config) { c.BucketLookup = "virtual" }},
		{"ca_bundle_file", func(c *s3.Config) { c.CABundleFile = "/etc/ca.pem" }},
	}
	if err := func() error { c := base(); return c.Validate() }(); err != nil {
		t.Fatalf("base config invalid: %v", err)
	}
	for _, c := range cases {
		cfg := base()
		c.mod(&cfg)
		err := cfg.Validate()
		var fe *s3.FieldError
		if !errors.As(err, &fe) || fe.Key != c.key {
			t.Errorf("want error on %s, got %v", c.key, err)
		}
	}
	// A pasted secret is never echoed back.
	cfg := base()
	cfg.AccessKeyRef = "AKIAIOSFODNN7EXAMPLE"
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), "AKIAIOSFODNN7EXAMPLE") {
		t.Fatalf("error echoes the value: %v", err)
	}
}

func TestResolver(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "s"), []byte("file-secret\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600)
	r := s3.Resolver{LookupEnv: func(k string) (string, bool) {
		if k == "SET" {
			return "env-secret", true
		}
		return "", false
	}}
	if v, err := r.Resolve("env:SET"); err != nil || v != "env-secret" {
		t.Fatalf("env: %q %v", v, err)
	}
	if v, err := r.Resolve("file:" + filepath.Join(dir, "s")); err != nil || v != "file-secret" {
		t.Fatalf("file (one trailing newline trimmed): %q %v", v, err)
	}
	for _, ref := range []string{"env:UNSET", "file:" + filepath.Join(dir, "missing"), "file:" + filepath.Join(dir, "empty")} {
		_, err := r.Resolve(ref)
		if err == nil || !strings.Contains(err.Error(), ref) {
			t.Fatalf("%s: error %v does not name the reference", ref, err)
		}
	}
}
