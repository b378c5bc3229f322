// Package s3test finds the real S3 servers that scripts/s3-up.sh started
// and makes a fresh bucket on one for a test. Tests only.
package s3test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"artifactstore/backends/s3"
)

// Expected are the servers `make test` starts; in CI each must be present.
var Expected = []string{"versitygw", "minio", "ceph"}

// Server is one running S3 server.
type Server struct {
	Name      string
	Endpoint  string
	AccessKey string
	SecretKey string
}

// Servers returns the servers named in ARTIFACTSTORE_TEST_S3_SERVERS (see
// scripts/s3-up.sh, which writes them to env.sh). With CI set, a missing
// expected server fails the test; otherwise the test is skipped with a hint.
func Servers(t testing.TB) []Server {
	t.Helper()
	names := strings.Split(os.Getenv("ARTIFACTSTORE_TEST_S3_SERVERS"), ",")
	var out []Server
	have := map[string]bool{}
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		up := "ARTIFACTSTORE_TEST_S3_" + strings.ToUpper(n) + "_"
		s := Server{Name: n, Endpoint: os.Getenv(up + "ENDPOINT"), AccessKey: os.Getenv(up + "ACCESS_KEY"), SecretKey: os.Getenv(up + "SECRET_KEY")}
		if s.Endpoint == "" || s.AccessKey == "" || s.SecretKey == "" {
			t.Fatalf("S3 server %s is listed but %sENDPOINT/ACCESS_KEY/SECRET_KEY are not all set", n, up)
		}
		out = append(out, s)
		have[n] = true
	}
	var missing []string
	for _, n := range Expected {
		if !have[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("S3 servers not running: %s (start them with `make s3-up` and source %s/env.sh, or run `make test`)",
			strings.Join(missing, ", "), stateDir())
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		if len(out) == 0 {
			t.Skip(msg)
		}
		t.Log(msg)
	}
	return out
}

func stateDir() string {
	if s := os.Getenv("ARTIFACTSTORE_S3_STATE"); s != "" {
		return s
	}
	return "/tmp/artifactstore-s3"
}

// Client returns a plain client for direct access in tests (corrupting an
// object, listing incomplete uploads).
func (s Server) Client(t testing.TB) minio.Core {
	t.Helper()
	host := strings.TrimPrefix(strings.TrimPrefix(s.Endpoint, "http://"), "https://")
	c, err := minio.New(host, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:       strings.HasPrefix(s.Endpoint, "https://"),
		Region:       "us-east-1",
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	return minio.Core{Client: c}
}

var seq atomic.Int64

// NewBucket creates an empty bucket, removed with its contents when the
// test ends, and returns a backend config using it. Credentials are passed
// as env: references to variables set for the test.
func (s Server) NewBucket(t testing.TB) s3.Config {
	t.Helper()
	c := s.Client(t)
	name := fmt.Sprintf("as-%s-%d-%d", s.Name, time.Now().UnixNano()%1e9, seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := c.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("%s: create bucket %s: %v", s.Name, name, err)
	}
	t.Cleanup(func() { RemoveBucket(t, c, name) })
	up := "ARTIFACTSTORE_TEST_S3_" + strings.ToUpper(s.Name) + "_"
	return s3.Config{
		EndpointURL:  s.Endpoint,
		Bucket:       name,
		AccessKeyRef: "env:" + up + "ACCESS_KEY",
		SecretKeyRef: "env:" + up + "SECRET_KEY",
	}
}

// RemoveBucket empties and deletes a bucket, aborting incomplete uploads.
func RemoveBucket(t testing.TB, c minio.Core, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for u := range c.ListIncompleteUploads(ctx, name, "", true) {
		if u.Err == nil {
			c.AbortMultipartUpload(ctx, name, u.Key, u.UploadID)
		}
	}
	objs := make(chan minio.ObjectInfo)
	go func() {
		defer close(objs)
		for o := range c.Client.ListObjects(ctx, name, minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				return
			}
			objs <- o
		}
	}()
	for e := range c.RemoveObjects(ctx, name, objs, minio.RemoveObjectsOptions{}) {
		t.Logf("remove object %s: %v", e.ObjectName, e.Err)
	}
	if err := c.RemoveBucket(ctx, name); err != nil {
		t.Logf("remove bucket %s: %v", name, err)
	}
}

// IncompleteUploads lists incomplete multipart uploads under prefix.
func IncompleteUploads(t testing.TB, c minio.Core, bucket, prefix string) []string {
	t.Helper()
	var keys []string
	for u := range c.ListIncompleteUploads(context.Background(), bucket, prefix, true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		keys = append(keys, u.Key+" ("+u.UploadID+")")
	}
	return keys
}
