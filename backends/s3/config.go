package s3

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
)

// Size limits of the S3 protocol.
const (
	MinPartSize   = 5 << 20 // smallest part but the last
	MaxPartSize   = 5 << 30 // largest part
	MaxPutSize    = 5 << 30 // largest single PUT
	MaxParts      = 10000
	defaultChunk  = 16 << 20
	defaultThresh = 64 << 20
	// defaultInFlight parts of an upload go up at once, each held in memory
	// once, so an upload holds at most defaultInFlight * chunk bytes.
	defaultInFlight = 2
	maxInFlight     = 16
)

// Config configures one S3 backend. The koanf tags are the YAML keys under
// backends.<id>.
type Config struct {
	// EndpointURL is http(s)://host[:port] of the S3 service (RGW, MinIO, AWS).
	EndpointURL string `koanf:"endpoint_url" yaml:"endpoint_url,omitempty"`
	// Region signs requests; RGW and MinIO accept us-east-1.
	Region string `koanf:"region" yaml:"region,omitempty"`
	// Bucket must exist; artifactstore never creates or deletes buckets.
	Bucket string `koanf:"bucket" yaml:"bucket,omitempty"`
	// AccessKeyRef and SecretKeyRef name where credentials come from:
	// "env:NAME" or "file:/path" (one trailing newline trimmed).
	AccessKeyRef string `koanf:"access_key_ref" yaml:"access_key_ref,omitempty"`
	SecretKeyRef string `koanf:"secret_key_ref" yaml:"secret_key_ref,omitempty"`
	// StorageClass is sent with every put when set (e.g. STANDARD).
	StorageClass string `koanf:"storage_class" yaml:"storage_class,omitempty"`
	// SSE is the server-side encryption of puts: "" or "none", or "sse-s3".
	SSE string `koanf:"sse" yaml:"sse,omitempty"`
	// MultipartThresholdBytes: objects larger than this go up in parts.
	MultipartThresholdBytes int64 `koanf:"multipart_threshold_bytes" yaml:"multipart_threshold_bytes,omitempty"`
	// MultipartChunkBytes is the part size of a multipart upload.
	MultipartChunkBytes int64 `koanf:"multipart_chunk_bytes" yaml:"multipart_chunk_bytes,omitempty"`
	// MultipartPartsInFlight is how many parts of one multipart upload are
	// sent at once (1-16). Above 1 each part is read into a buffer of
	// MultipartChunkBytes first, so one upload holds at most
	// MultipartPartsInFlight * MultipartChunkBytes bytes; 1 streams each part
	// straight from the body without a buffer, one after another.
	MultipartPartsInFlight int `koanf:"multipart_parts_in_flight" yaml:"multipart_parts_in_flight,omitempty"`
	// CABundleFile is a PEM file of extra CAs to trust for https endpoints
	// (an internal certificate authority in front of RGW).
	CABundleFile string `koanf:"ca_bundle_file" yaml:"ca_bundle_file,omitempty"`
	// BucketLookup is "path" (default; what RGW and MinIO expect without
	// wildcard DNS), "dns" (virtual-hosted style) or "auto".
	BucketLookup string `koanf:"bucket_lookup" yaml:"bucket_lookup,omitempty"`
	// MaxRetries bounds attempts of a retryable request (see docs/OPERATOR.md).
	MaxRetries int `koanf:"max_retries" yaml:"max_retries,omitempty"`
}

// Keys lists the YAML keys of Config, for the config loader.
func Keys() []string {
	return []string{"endpoint_url", "region", "bucket", "access_key_ref", "secret_key_ref", "storage_class",
		"sse", "multipart_threshold_bytes", "multipart_chunk_bytes", "multipart_parts_in_flight", "ca_bundle_file", "bucket_lookup", "max_retries"}
}

// Target names where objects go, for listings: endpoint/bucket/prefix.
func (c Config) Target(keyPrefix string) string {
	return c.EndpointURL + "/" + c.Bucket + "/" + keyPrefix
}

// FieldError names the key (under backends.<id>) that is wrong.
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Msg }

// SetDefaults fills unset optional keys.
func (c *Config) SetDefaults() {
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.MultipartChunkBytes == 0 {
		c.MultipartChunkBytes = defaultChunk
	}
	if c.MultipartThresholdBytes == 0 {
		c.MultipartThresholdBytes = defaultThresh
	}
	if c.MultipartPartsInFlight == 0 {
		c.MultipartPartsInFlight = defaultInFlight
	}
	if c.BucketLookup == "" {
		c.BucketLookup = "path"
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 3
	}
}

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// Validate checks every key; it does not resolve credentials.
func (c *Config) Validate() error {
	u, err := url.Parse(c.EndpointURL)
	if c.EndpointURL == "" {
		return &FieldError{"endpoint_url", "required"}
	}
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return &FieldError{"endpoint_url", fmt.Sprintf("%q must be http://host[:port] or https://host[:port]", c.EndpointURL)}
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return &FieldError{"endpoint_url", "must not carry a path, query or user info"}
	}
	if err := validateBucket(c.Bucket); err != nil {
		return err
	}
	for _, r := range []struct{ key, v string }{{"access_key_ref", c.AccessKeyRef}, {"secret_key_ref", c.SecretKeyRef}} {
		if err := validateRef(r.v); err != nil {
			return &FieldError{r.key, err.Error()}
		}
	}
	switch strings.ToLower(c.SSE) {
	case "", "none", "sse-s3":
	default:
		return &FieldError{"sse", fmt.Sprintf("%q is not one of none, sse-s3", c.SSE)}
	}
	if c.MultipartChunkBytes < MinPartSize || c.MultipartChunkBytes > MaxPartSize {
		return &FieldError{"multipart_chunk_bytes", fmt.Sprintf("%d must be between 5 MiB (%d) and 5 GiB (%d)", c.MultipartChunkBytes, MinPartSize, MaxPartSize)}
	}
	if c.MultipartThresholdBytes < 0 || c.MultipartThresholdBytes > MaxPutSize {
		return &FieldError{"multipart_threshold_bytes", fmt.Sprintf("%d must be between 0 and 5 GiB (%d), the most one PUT may carry", c.MultipartThresholdBytes, int64(MaxPutSize))}
	}
	if c.MultipartPartsInFlight < 1 || c.MultipartPartsInFlight > maxInFlight {
		return &FieldError{"multipart_parts_in_flight", fmt.Sprintf("%d must be between 1 and %d", c.MultipartPartsInFlight, maxInFlight)}
	}
	switch c.BucketLookup {
	case "path", "dns", "auto":
	default:
		return &FieldError{"bucket_lookup", fmt.Sprintf("%q is not one of path, dns, auto", c.BucketLookup)}
	}
	if c.MaxRetries < 1 || c.MaxRetries > 20 {
		return &FieldError{"max_retries", "must be between 1 and 20"}
	}
	if c.CABundleFile != "" && u.Scheme != "https" {
		return &FieldError{"ca_bundle_file", "only applies to an https endpoint_url"}
	}
	if strings.ContainsAny(c.StorageClass, " \r\n\t") {
		return &FieldError{"storage_class", "must be a single word such as STANDARD"}
	}
	return nil
}

// validateBucket applies the S3 bucket naming rules.
func validateBucket(b string) error {
	switch {
	case b == "":
		return &FieldError{"bucket", "required"}
	case !bucketRE.MatchString(b):
		return &FieldError{"bucket", fmt.Sprintf("%q must be 3-63 of a-z, 0-9, '.' and '-', starting and ending with a letter or digit", b)}
	case strings.Contains(b, ".."):
		return &FieldError{"bucket", fmt.Sprintf("%q must not contain '..'", b)}
	case net.ParseIP(b) != nil:
		return &FieldError{"bucket", fmt.Sprintf("%q must not look like an IP address", b)}
	case strings.HasPrefix(b, "xn--") || strings.HasSuffix(b, "-s3alias"):
		return &FieldError{"bucket", fmt.Sprintf("%q uses a reserved prefix or suffix", b)}
	}
	return nil
}

func validateRef(ref string) error {
	kind, rest, ok := strings.Cut(ref, ":")
	if ref == "" {
		return fmt.Errorf("required (env:NAME or file:/path)")
	}
	if !ok || rest == "" || (kind != "env" && kind != "file") {
		return fmt.Errorf("%q must be env:NAME or file:/path", clipRef(ref))
	}
	if kind == "file" && !strings.HasPrefix(rest, "/") {
		return fmt.Errorf("%q: the file path must be absolute", ref)
	}
	return nil
}

// clipRef avoids echoing a whole value when someone pasted a secret where
// a reference belongs.
func clipRef(ref string) string {
	if strings.HasPrefix(ref, "env:") || strings.HasPrefix(ref, "file:") {
		return ref
	}
	if len(ref) > 4 {
		return ref[:2] + "…(not a reference; value hidden)"
	}
	return "…(value hidden)"
}

// Resolver looks up credential references.
type Resolver struct {
	// LookupEnv defaults to os.LookupEnv.
	LookupEnv func(string) (string, bool)
	// ReadFile defaults to os.ReadFile.
	ReadFile func(string) ([]byte, error)
}

// Resolve returns the secret a reference names. Errors name the reference,
// never the value.
func (r Resolver) Resolve(ref string) (string, error) {
	if err := validateRef(ref); err != nil {
		return "", err
	}
	kind, rest, _ := strings.Cut(ref, ":")
	switch kind {
	case "env":
		look := r.LookupEnv
		if look == nil {
			look = os.LookupEnv
		}
		v, ok := look(rest)
		if !ok || v == "" {
			return "", fmt.Errorf("credential reference %s: environment variable %s is not set or empty", ref, rest)
		}
		return v, nil
	default:
		read := r.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		b, err := read(rest)
		if err != nil {
			return "", fmt.Errorf("credential reference %s: cannot read the file: %v", ref, pathErrNoValue(err))
		}
		v := strings.TrimSuffix(string(b), "\n")
		v = strings.TrimSuffix(v, "\r")
		if v == "" {
			return "", fmt.Errorf("credential reference %s: the file is empty", ref)
		}
		return v, nil
	}
}

func pathErrNoValue(err error) error {
	var pe *os.PathError
	if ok := asPathErr(err, &pe); ok {
		return pe.Err
	}
	return err
}
