package app

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"artifactstore/backends/local"
	"artifactstore/backends/s3"
	"artifactstore/internal/registry"
	"artifactstore/internal/webhook"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
)

// defaultConfig is the embedded default: a local backend under ./data.
// config.example.yaml documents the same values line by line.
//
//go:embed default.yaml
var defaultConfig []byte

// EnvPrefix starts every environment override; "__" separates levels:
// ARTIFACTSTORE_SERVER__LISTEN=0.0.0.0:8080 sets server.listen.
const EnvPrefix = "ARTIFACTSTORE_"

// Config is the whole configuration. Field tags are the YAML keys.
type Config struct {
	// DataDir holds the database and, by default, the local backend.
	DataDir  string                   `koanf:"data_dir" yaml:"data_dir"`
	Server   ServerConfig             `koanf:"server" yaml:"server"`
	Database DatabaseConfig           `koanf:"database" yaml:"database"`
	Log      LogConfig                `koanf:"log" yaml:"log"`
	Backends map[string]BackendConfig `koanf:"backends" yaml:"backends"`
	Routing  RoutingConfig            `koanf:"routing" yaml:"routing"`
	Verify   VerifyConfig             `koanf:"verify" yaml:"verify"`
	Auth     AuthConfig               `koanf:"auth" yaml:"auth"`
	Cleanup  CleanupConfig            `koanf:"cleanup" yaml:"cleanup"`
	// Replication completes pending copies and repairs failed ones.
	Replication ReplicationConfig `koanf:"replication" yaml:"replication"`
	// Retention, GC and Events are the lifecycle (internal/lifecycle).
	Retention RetentionConfig `koanf:"retention" yaml:"retention"`
	GC        GCConfig        `koanf:"gc" yaml:"gc"`
	Events    EventsConfig    `koanf:"events" yaml:"events"`
	Webhooks  webhook.Config  `koanf:"webhooks" yaml:"webhooks"`
	// Snapshots of the database into a backend (internal/recovery).
	Snapshots SnapshotsConfig `koanf:"snapshots" yaml:"snapshots"`
}

// CleanupConfig drives the removal of what interrupted work leaves behind
// (internal/cleanup): spool files of one-request publishes and incomplete
// writes of backends (uploads a killed process had open).
type CleanupConfig struct {
	// Interval between cleanup runs; one also runs at start-up.
	Interval time.Duration `koanf:"interval" yaml:"interval"`
	// IncompleteWriteAge: incomplete writes started longer ago are
	// aborted. Keep it above the longest upload a client may take.
	IncompleteWriteAge time.Duration `koanf:"incomplete_write_age" yaml:"incomplete_write_age"`
}

// ReplicationConfig drives internal/replication: copies a rule asks for
// that a publish could not write, and repairs of failed copies from good
// ones, run when verification or a read records a failure, and retried
// every RetryInterval.
type ReplicationConfig struct {
	RetryInterval time.Duration `koanf:"retry_interval" yaml:"retry_interval"`
}

// RetentionConfig holds the retention policy of each retention class; a
// class without one is kept forever.
type RetentionConfig struct {
	// Interval between scheduled retention runs (each followed by gc);
	// 0 disables the schedule (`retention apply` still works).
	Interval time.Duration                    `koanf:"interval" yaml:"interval"`
	Classes  map[string]RetentionPolicyConfig `koanf:"classes" yaml:"classes"`
}

// RetentionPolicyConfig is one class's policy.
type RetentionPolicyConfig struct {
	// KeepLast keeps the newest N versions of each package name.
	KeepLast int `koanf:"keep_last" yaml:"keep_last"`
	// MaxAge deletes versions older than this.
	MaxAge time.Duration `koanf:"max_age" yaml:"max_age"`
	// KeepLabel protects versions with this label ("key=value" or "key").
	KeepLabel string `koanf:"keep_label" yaml:"keep_label"`
	// NeverDelete keeps every version of the class.
	NeverDelete bool `koanf:"never_delete" yaml:"never_delete"`
}

// GCConfig drives garbage collection of content no package needs.
type GCConfig struct {
	// Interval between scheduled gc runs; 0 disables the schedule.
	Interval time.Duration `koanf:"interval" yaml:"interval"`
	// OrphanGrace is how long gc must have seen an object the registry
	// does not know before `gc --orphans` deletes it.
	OrphanGrace time.Duration `koanf:"orphan_grace" yaml:"orphan_grace"`
}

// EventsConfig is event log retention.
type EventsConfig struct {
	// MaxAge of events without an age of their own.
	MaxAge time.Duration `koanf:"max_age" yaml:"max_age"`
	// VerificationMaxAge of v1.storage.location_verified events.
	VerificationMaxAge time.Duration `koanf:"verification_max_age" yaml:"verification_max_age"`
	// SummaryMaxAge of run summaries (v1.lifecycle.*).
	SummaryMaxAge time.Duration `koanf:"summary_max_age" yaml:"summary_max_age"`
	// PruneInterval between pruning passes; 0 disables pruning.
	PruneInterval time.Duration `koanf:"prune_interval" yaml:"prune_interval"`
}

// AuthConfig controls access. Writes always need a publish token bound to
// the package's producer; admin operations over HTTP need an admin token.
type AuthConfig struct {
	// AnonymousRead lets requests without a token read packages and events.
	AnonymousRead bool `koanf:"anonymous_read" yaml:"anonymous_read"`
	// ProducerDelete lets a publish token delete packages of its
	// producers; otherwise deletes need an admin token.
	ProducerDelete bool `koanf:"producer_delete" yaml:"producer_delete"`
}

// VerifyConfig drives the built-in verification scheduler and the budget
// every verification run (scheduled or from the CLI) shares.
type VerifyConfig struct {
	// Concurrency is how many objects a run checks at once.
	Concurrency int `koanf:"concurrency" yaml:"concurrency"`
	// BytesPerSecond caps deep-verification reads; 0 means no cap.
	BytesPerSecond int64 `koanf:"bytes_per_second" yaml:"bytes_per_second"`
	// Deep re-reads and re-hashes every object.
	Deep ScheduleConfig `koanf:"deep" yaml:"deep"`
	// Quick checks existence and size only.
	Quick ScheduleConfig `koanf:"quick" yaml:"quick"`
	// TrustedReadWindow: a full read of a location whose deep check matched
	// less than this long ago skips hashing (sendfile for local files).
	// 0 hashes every full read.
	TrustedReadWindow time.Duration `koanf:"trusted_read_window" yaml:"trusted_read_window"`
}

// ScheduleConfig is one periodic verification; interval 0 disables it.
type ScheduleConfig struct {
	Interval time.Duration `koanf:"interval" yaml:"interval"`
	Jitter   time.Duration `koanf:"jitter" yaml:"jitter"`
}

// ServerConfig is the HTTP side.
type ServerConfig struct {
	Listen             string        `koanf:"listen" yaml:"listen"`
	MaxBodyBytes       int64         `koanf:"max_body_bytes" yaml:"max_body_bytes"`
	MaxManifestBytes   int64         `koanf:"max_manifest_bytes" yaml:"max_manifest_bytes"`
	MaxFilesPerPackage int           `koanf:"max_files_per_package" yaml:"max_files_per_package"`
	UploadSessionTTL   time.Duration `koanf:"upload_session_ttl" yaml:"upload_session_ttl"`
	ReadHeaderTimeout  time.Duration `koanf:"read_header_timeout" yaml:"read_header_timeout"`
	IdleTimeout        time.Duration `koanf:"idle_timeout" yaml:"idle_timeout"`
	ShutdownTimeout    time.Duration `koanf:"shutdown_timeout" yaml:"shutdown_timeout"`
	// BodyReadTimeout is the longest wait for the next bytes of a request
	// body; a client that trickles slower is cut off.
	BodyReadTimeout time.Duration `koanf:"body_read_timeout" yaml:"body_read_timeout"`
	// MaxConcurrentUploads bounds staged blob uploads and one-request
	// form publishes in flight together.
	MaxConcurrentUploads int `koanf:"max_concurrent_uploads" yaml:"max_concurrent_uploads"`
	// MinBodyRate (bytes per second of waiting, over BodyRateWindow) is
	// the least a client must send of a request body; 0 disables it.
	MinBodyRate    int64         `koanf:"min_body_rate" yaml:"min_body_rate"`
	BodyRateWindow time.Duration `koanf:"body_rate_window" yaml:"body_rate_window"`
	// FormMemoryBytes bounds what all one-request publishes together hold
	// in memory; beyond it file parts are spooled to disk.
	FormMemoryBytes int64 `koanf:"form_memory_bytes" yaml:"form_memory_bytes"`
	// TLSCertFile and TLSKeyFile switch listen to HTTPS.
	TLSCertFile string `koanf:"tls_cert_file" yaml:"tls_cert_file"`
	TLSKeyFile  string `koanf:"tls_key_file" yaml:"tls_key_file"`
	// LocalListen optionally serves the same API over plain HTTP on a
	// loopback address (for local tools while listen is HTTPS).
	LocalListen string `koanf:"local_listen" yaml:"local_listen"`
}

// DatabaseConfig locates the bbolt file.
type DatabaseConfig struct {
	// Path defaults to <data_dir>/registry.db.
	Path        string        `koanf:"path" yaml:"path"`
	LockTimeout time.Duration `koanf:"lock_timeout" yaml:"lock_timeout"`
	// BatchDelay is how long an idle database waits for more writes to
	// join a publish's group commit (store.Options.BatchDelay).
	BatchDelay time.Duration `koanf:"batch_delay" yaml:"batch_delay"`
}

// LogConfig selects log level and format.
type LogConfig struct {
	Level  string `koanf:"level" yaml:"level"`
	Format string `koanf:"format" yaml:"format"`
}

// BackendConfig is one storage backend; Type selects which keys apply.
type BackendConfig struct {
	Type      string `koanf:"type" yaml:"type"`
	KeyPrefix string `koanf:"key_prefix" yaml:"key_prefix"`
	// Path is the root directory of a local backend; default <data_dir>/objects.
	Path string `koanf:"path" yaml:"path,omitempty"`
	// Sync is how a local backend makes writes durable: "filesystem"
	// (default: concurrent writes share one syncfs of the root's file
	// system) or "file" (each write fsyncs its own file and directory).
	Sync string `koanf:"sync" yaml:"sync,omitempty"`
	// S3 holds the keys of an s3 backend (see backends/s3.Config).
	S3 s3.Config `koanf:",squash" yaml:",inline"`
	// DirectDownloads lets the API answer a download of this backend's
	// content with a redirect to a time-limited URL of the storage
	// service (s3 backends only), when the location was verified within
	// DirectMaxVerifiedAge; otherwise the bytes are proxied.
	DirectDownloads      bool          `koanf:"direct_downloads" yaml:"direct_downloads,omitempty"`
	DirectMaxVerifiedAge time.Duration `koanf:"direct_max_verified_age" yaml:"direct_max_verified_age,omitempty"`
	// DirectURLTTL is how long a handed-out URL stays valid; default 5m.
	DirectURLTTL time.Duration `koanf:"direct_url_ttl" yaml:"direct_url_ttl,omitempty"`
}

// directKeys are the keys of direct downloads, for backend types whose
// backend can hand out direct URLs.
var directKeys = []string{"direct_downloads", "direct_max_verified_age", "direct_url_ttl"}

// backendKeys lists which keys each backend type accepts.
var backendKeys = map[string][]string{
	"local": {"type", "key_prefix", "path", "sync"},
	"s3":    append(append([]string{"type", "key_prefix"}, s3.Keys()...), directKeys...),
}

// defaultDirectURLTTL is the lifetime of a direct download URL unless
// direct_url_ttl says otherwise.
const defaultDirectURLTTL = 5 * time.Minute

// directPolicies returns the direct download policy of every backend that
// has direct downloads on.
func (c *Config) directPolicies() map[string]registry.DirectPolicy {
	out := map[string]registry.DirectPolicy{}
	for id, b := range c.Backends {
		if b.DirectDownloads {
			out[id] = registry.DirectPolicy{MaxVerifiedAge: b.DirectMaxVerifiedAge, URLTTL: b.DirectURLTTL}
		}
	}
	return out
}

// RoutingConfig picks the backends of each package.
type RoutingConfig struct {
	// Default receives packages no rule matches; may be empty when rules
	// are given (a package no rule matches is then refused).
	Default string `koanf:"default" yaml:"default" json:"default"`
	// DefaultBackends instead of Default keeps a copy on each backend
	// (first one first), DefaultMinCopies of them written before commit.
	DefaultBackends  []string     `koanf:"default_backends" yaml:"default_backends" json:"default_backends,omitempty"`
	DefaultMinCopies int          `koanf:"default_min_copies" yaml:"default_min_copies" json:"default_min_copies,omitempty"`
	Rules            []RuleConfig `koanf:"rules" yaml:"rules" json:"rules"`
}

// RuleConfig matches producer and retention class (exact values or path.Match
// globs; empty means any) and names a backend, or several (a copy on each).
// The first match wins.
type RuleConfig struct {
	Producer       string   `koanf:"producer" yaml:"producer" json:"producer"`
	RetentionClass string   `koanf:"retention_class" yaml:"retention_class" json:"retention_class"`
	Backend        string   `koanf:"backend" yaml:"backend" json:"backend,omitempty"`
	Backends       []string `koanf:"backends" yaml:"backends" json:"backends,omitempty"`
	// MinCopies is how many of Backends must hold the content before the
	// publish commits; the others are completed in the background. 0
	// means all.
	MinCopies int `koanf:"min_copies" yaml:"min_copies" json:"min_copies,omitempty"`
}

// route returns the rule's backends and minimum.
func (r RuleConfig) route() registry.Route {
	if r.Backend != "" {
		return registry.Route{Backends: []string{r.Backend}, MinCopies: r.MinCopies}
	}
	return registry.Route{Backends: r.Backends, MinCopies: r.MinCopies}
}

// defaultRoute returns the default's backends and minimum.
func (c RoutingConfig) defaultRoute() registry.Route {
	if c.Default != "" {
		return registry.Route{Backends: []string{c.Default}, MinCopies: c.DefaultMinCopies}
	}
	return registry.Route{Backends: c.DefaultBackends, MinCopies: c.DefaultMinCopies}
}

// checkRoute validates one route's backends and minimum.
func checkRoute(key, singleKey, listKey, minKey string, single string, list []string, minCopies int, known map[string]BackendConfig, ids []string) error {
	if single != "" && len(list) > 0 {
		return &ConfigError{Key: key + "." + listKey, Msg: fmt.Sprintf("set %s or %s, not both", singleKey, listKey)}
	}
	names := list
	nameKey := func(i int) string { return fmt.Sprintf("%s.%s[%d]", key, listKey, i) }
	if single != "" {
		names = []string{single}
		nameKey = func(int) string { return key + "." + singleKey }
	}
	seen := map[string]bool{}
	for i, id := range names {
		if _, ok := known[id]; !ok {
			return &ConfigError{Key: nameKey(i), Msg: fmt.Sprintf("names unknown backend %q (configured: %s)", id, strings.Join(ids, ", "))}
		}
		if seen[id] {
			return &ConfigError{Key: nameKey(i), Msg: fmt.Sprintf("names backend %q twice (each backend holds one copy)", id)}
		}
		seen[id] = true
	}
	if minCopies < 0 || (len(names) > 0 && minCopies > len(names)) {
		return &ConfigError{Key: key + "." + minKey, Msg: fmt.Sprintf("%d is out of range: between 1 and the %d backends named (0 or unset: all of them)", minCopies, len(names))}
	}
	return nil
}

// ConfigError names the key that is wrong and, when LoadConfig knows it,
// where it was set.
type ConfigError struct {
	Key string
	Msg string
	// Source is where the key was set: "FILE line N", "environment
	// variable NAME" or "command-line flag"; empty for a default.
	Source string
}

func (e *ConfigError) Error() string {
	if e.Source != "" {
		return "config: " + e.Key + " (" + e.Source + "): " + e.Msg
	}
	return "config: " + e.Key + ": " + e.Msg
}

// LoadOptions says where configuration comes from.
type LoadOptions struct {
	// File is a YAML file; empty means defaults only.
	File string
	// Raw, if set, is YAML used instead of File (fuzzing, tests).
	Raw []byte
	// Environ is the process environment (os.Environ() form).
	Environ []string
	// Flags are the command-line flags that were set, by config key.
	Flags map[string]any
}

// LoadConfig layers defaults, the file, ARTIFACTSTORE_ environment
// variables and set flags, then validates the result. Every error about
// a key is a *ConfigError naming where the key was set.
func LoadConfig(opts LoadOptions) (*Config, error) {
	src := &configSources{flags: opts.Flags}
	cfg, err := loadConfig(opts, src)
	var ce *ConfigError
	if errors.As(err, &ce) && ce.Source == "" {
		ce.Source = src.of(ce.Key)
		if _, ok := src.envVar[ce.Key]; ok && strings.Contains(ce.Msg, "did you mean ") {
			// Suggest the variable, not the YAML key.
			_, after, _ := strings.Cut(ce.Msg, "did you mean ")
			suggested := strings.TrimSuffix(after, "?")
			ce.Msg = strings.Replace(ce.Msg, after, envName(suggested)+"?", 1)
		}
	}
	return cfg, err
}

func loadConfig(opts LoadOptions, src *configSources) (*Config, error) {
	k := koanf.New(".")
	if err := k.Load(rawbytes.Provider(defaultConfig), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("config: embedded defaults: %w", err)
	}
	defaultBackends := k.Get("backends")
	defaultDefault := k.Get("routing.default")
	k.Delete("backends")
	k.Delete("routing")

	fileK := koanf.New(".")
	raw, name := opts.Raw, "inline config"
	if raw == nil && opts.File != "" {
		var err error
		if raw, err = os.ReadFile(opts.File); err != nil {
			return nil, &ConfigError{Key: "--config", Msg: err.Error()}
		}
		name = opts.File
	}
	if raw != nil {
		if err := fileK.Load(rawbytes.Provider(raw), yaml.Parser()); err != nil {
			return nil, &ConfigError{Key: name, Msg: "not valid YAML: " + err.Error()}
		}
		src.file, src.raw, src.fileSet = name, raw, map[string]bool{}
		for _, key := range fileK.Keys() {
			src.fileSet[key] = true
		}
	}
	envK := koanf.New(".")
	envValues, envVars := envMap(opts.Environ)
	src.envVar = envVars
	if err := envK.Load(confmap.Provider(envValues, "."), nil); err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}
	for _, layer := range []*koanf.Koanf{fileK, envK} {
		if err := k.Merge(layer); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	if len(opts.Flags) > 0 {
		if err := k.Load(confmap.Provider(opts.Flags, "."), nil); err != nil {
			return nil, fmt.Errorf("config: flags: %w", err)
		}
	}
	// The default local backend applies only when no backend is configured,
	// so a file that defines its own backends is not mixed with ours.
	if !k.Exists("backends") {
		k.Set("backends", defaultBackends)
		if !k.Exists("routing.default") && !k.Exists("routing.rules") {
			k.Set("routing.default", defaultDefault)
		}
	}
	if err := checkKeys(k.Raw(), reflect.TypeOf(Config{}), ""); err != nil {
		return nil, err
	}
	if err := checkBackendKeys(k.Get("backends")); err != nil {
		return nil, err
	}
	for key, v := range k.All() {
		t := typeAt(reflect.TypeOf(Config{}), key)
		if t == nil {
			continue
		}
		conv, err := convertValue(key, v, t)
		if err != nil {
			return nil, err
		}
		k.Set(key, conv)
	}
	var cfg Config
	err := k.UnmarshalWithConf("", &cfg, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
		),
		WeaklyTypedInput: true,
		Result:           &cfg,
		TagName:          "koanf",
	}})
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// envMap turns ARTIFACTSTORE_SERVER__LISTEN=x into {"server.listen": "x"},
// and names the variable of each key.
//
// A variable is configuration when its name contains "__" (a nested key;
// unknown ones are errors) or names a top-level key (ARTIFACTSTORE_DATA_DIR).
// Other ARTIFACTSTORE_ variables (ARTIFACTSTORE_CONFIG, ARTIFACTSTORE_URL,
// the test harness's ARTIFACTSTORE_TEST_*) are inputs of other tools.
func envMap(environ []string) (map[string]any, map[string]string) {
	top := structKeys(reflect.TypeOf(Config{}))
	out := map[string]any{}
	names := map[string]string{}
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, EnvPrefix) {
			continue
		}
		key := strings.ToLower(strings.TrimPrefix(k, EnvPrefix))
		if _, isTop := top[key]; !isTop && !strings.Contains(key, "__") {
			continue
		}
		out[strings.ReplaceAll(key, "__", ".")] = v
		names[strings.ReplaceAll(key, "__", ".")] = k
	}
	return out, names
}

// checkKeys reports the first key not defined by t, naming its full path.
func checkKeys(raw any, t reflect.Type, prefix string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			if raw == nil {
				return nil
			}
			return &ConfigError{Key: strings.TrimSuffix(prefix, "."), Msg: fmt.Sprintf("must be a mapping, not %T", raw)}
		}
		fields := structKeys(t)
		names := make([]string, 0, len(m))
		for name := range m {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			ft, ok := fields[name]
			if !ok {
				return unknownKey(prefix, name, fields)
			}
			if err := checkKeys(m[name], ft, prefix+name+"."); err != nil {
				return err
			}
		}
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			if raw == nil {
				return nil
			}
			return &ConfigError{Key: strings.TrimSuffix(prefix, "."), Msg: fmt.Sprintf("must be a mapping, not %T", raw)}
		}
		for name, v := range m {
			if err := checkKeys(v, t.Elem(), prefix+name+"."); err != nil {
				return err
			}
		}
	case reflect.Slice:
		s, ok := raw.([]any)
		if !ok || t.Elem().Kind() != reflect.Struct {
			return nil
		}
		for i, v := range s {
			if err := checkKeys(v, t.Elem(), fmt.Sprintf("%s[%d].", strings.TrimSuffix(prefix, "."), i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// unknownKey reports prefix+name, suggesting the nearest key of the same
// mapping.
func unknownKey(prefix, name string, fields map[string]reflect.Type) error {
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	sort.Strings(known)
	msg := "unknown key"
	if s := nearest(name, known); s != "" {
		msg += "; did you mean " + prefix + s + "?"
	} else {
		msg += fmt.Sprintf(" (keys here: %s)", strings.Join(known, ", "))
	}
	return &ConfigError{Key: prefix + name, Msg: msg}
}

// structKeys maps koanf tags to field types, flattening ",squash" embeds.
func structKeys(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "squash") {
			for k, v := range structKeys(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		out[name] = f.Type
	}
	return out
}

// normalize fills derived defaults.
func (c *Config) normalize() error {
	if c.DataDir == "" {
		return &ConfigError{Key: "data_dir", Msg: "must not be empty"}
	}
	if c.Database.Path == "" {
		c.Database.Path = filepath.Join(c.DataDir, "registry.db")
	}
	for id, b := range c.Backends {
		switch b.Type {
		case "local":
			if b.Path == "" {
				b.Path = filepath.Join(c.DataDir, "objects")
			}
			if b.Sync == "" {
				b.Sync = local.SyncFileSystem
			}
		case "s3":
			b.S3.SetDefaults()
		}
		if b.DirectDownloads && b.DirectURLTTL == 0 {
			b.DirectURLTTL = defaultDirectURLTTL
		}
		c.Backends[id] = b
	}
	return nil
}

// Validate checks values, naming the offending key.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Server.Listen); err != nil {
		return &ConfigError{Key: "server.listen", Msg: fmt.Sprintf("%q is not host:port", c.Server.Listen)}
	}
	positive := []struct {
		key string
		v   int64
	}{
		{"server.max_body_bytes", c.Server.MaxBodyBytes},
		{"server.max_manifest_bytes", c.Server.MaxManifestBytes},
		{"server.max_files_per_package", int64(c.Server.MaxFilesPerPackage)},
		{"server.upload_session_ttl", int64(c.Server.UploadSessionTTL)},
		{"server.read_header_timeout", int64(c.Server.ReadHeaderTimeout)},
		{"server.idle_timeout", int64(c.Server.IdleTimeout)},
		{"server.shutdown_timeout", int64(c.Server.ShutdownTimeout)},
		{"server.body_read_timeout", int64(c.Server.BodyReadTimeout)},
		{"server.max_concurrent_uploads", int64(c.Server.MaxConcurrentUploads)},
		{"server.body_rate_window", int64(c.Server.BodyRateWindow)},
		{"server.form_memory_bytes", c.Server.FormMemoryBytes},
		{"cleanup.interval", int64(c.Cleanup.Interval)},
		{"replication.retry_interval", int64(c.Replication.RetryInterval)},
		{"cleanup.incomplete_write_age", int64(c.Cleanup.IncompleteWriteAge)},
		{"database.lock_timeout", int64(c.Database.LockTimeout)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return &ConfigError{Key: p.key, Msg: "must be greater than zero"}
		}
	}
	if c.Database.BatchDelay < 0 || c.Database.BatchDelay > time.Second {
		return &ConfigError{Key: "database.batch_delay", Msg: "must be between 0s (commit at once) and 1s"}
	}
	if c.Server.MinBodyRate < 0 {
		return &ConfigError{Key: "server.min_body_rate", Msg: "must not be negative (0 disables the rate check)"}
	}
	if (c.Server.TLSCertFile == "") != (c.Server.TLSKeyFile == "") {
		return &ConfigError{Key: "server.tls_cert_file", Msg: "tls_cert_file and tls_key_file go together"}
	}
	for _, f := range []struct{ key, path string }{{"server.tls_cert_file", c.Server.TLSCertFile}, {"server.tls_key_file", c.Server.TLSKeyFile}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				return &ConfigError{Key: f.key, Msg: err.Error()}
			}
		}
	}
	if c.Server.LocalListen != "" {
		host, _, err := net.SplitHostPort(c.Server.LocalListen)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() {
			return &ConfigError{Key: "server.local_listen", Msg: fmt.Sprintf("%q must be a loopback host:port such as 127.0.0.1:8081", c.Server.LocalListen)}
		}
	}
	if c.Verify.Concurrency < 1 || c.Verify.Concurrency > 64 {
		return &ConfigError{Key: "verify.concurrency", Msg: "must be between 1 and 64"}
	}
	if c.Verify.TrustedReadWindow < 0 {
		return &ConfigError{Key: "verify.trusted_read_window", Msg: "must not be negative (0 hashes every full read)"}
	}
	if c.Verify.BytesPerSecond < 0 {
		return &ConfigError{Key: "verify.bytes_per_second", Msg: "must not be negative (0 means no cap)"}
	}
	for _, sc := range []struct {
		key string
		s   ScheduleConfig
	}{{"verify.deep", c.Verify.Deep}, {"verify.quick", c.Verify.Quick}} {
		if sc.s.Interval < 0 {
			return &ConfigError{Key: sc.key + ".interval", Msg: "must not be negative (0 disables the schedule)"}
		}
		if sc.s.Jitter < 0 {
			return &ConfigError{Key: sc.key + ".jitter", Msg: "must not be negative"}
		}
		if sc.s.Interval > 0 && sc.s.Interval < time.Second {
			return &ConfigError{Key: sc.key + ".interval", Msg: "must be at least 1s"}
		}
	}
	if err := c.validateLifecycle(); err != nil {
		return err
	}
	if err := c.validateSnapshots(); err != nil {
		return err
	}
	if err := c.Webhooks.Validate(); err != nil {
		var fe *webhook.FieldError
		if errors.As(err, &fe) {
			return &ConfigError{Key: "webhooks." + fe.Field, Msg: fe.Msg}
		}
		return err
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return &ConfigError{Key: "log.level", Msg: fmt.Sprintf("%q is not one of debug, info, warn, error", c.Log.Level)}
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return &ConfigError{Key: "log.format", Msg: fmt.Sprintf("%q is not one of text, json", c.Log.Format)}
	}
	if len(c.Backends) == 0 {
		return &ConfigError{Key: "backends", Msg: "at least one backend is required"}
	}
	ids := make([]string, 0, len(c.Backends))
	for id := range c.Backends {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if err := validateBackend(id, c.Backends[id]); err != nil {
			return err
		}
	}
	if c.Routing.Default == "" && len(c.Routing.DefaultBackends) == 0 && len(c.Routing.Rules) == 0 {
		return &ConfigError{Key: "routing.default", Msg: "required when routing.rules is empty"}
	}
	if err := checkRoute("routing", "default", "default_backends", "default_min_copies", c.Routing.Default, c.Routing.DefaultBackends, c.Routing.DefaultMinCopies, c.Backends, ids); err != nil {
		return err
	}
	for i, r := range c.Routing.Rules {
		key := fmt.Sprintf("routing.rules[%d]", i)
		if r.Backend == "" && len(r.Backends) == 0 {
			return &ConfigError{Key: key + ".backend", Msg: fmt.Sprintf("names no backend (set backend, or backends for a copy on each; configured: %s)", strings.Join(ids, ", "))}
		}
		if err := checkRoute(key, "backend", "backends", "min_copies", r.Backend, r.Backends, r.MinCopies, c.Backends, ids); err != nil {
			return err
		}
		for _, g := range []struct{ k, v string }{{"producer", r.Producer}, {"retention_class", r.RetentionClass}} {
			if _, err := path.Match(g.v, ""); err != nil {
				return &ConfigError{Key: key + "." + g.k, Msg: fmt.Sprintf("bad glob %q: %v", g.v, err)}
			}
		}
	}
	return nil
}

var backendIDChars = func(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func validateBackend(id string, b BackendConfig) error {
	key := "backends." + id
	if !backendIDChars(id) {
		return &ConfigError{Key: key, Msg: "backend id must be 1-64 of a-z, 0-9, '-' and '_'"}
	}
	if _, ok := backendKeys[b.Type]; !ok {
		types := make([]string, 0, len(backendKeys))
		for t := range backendKeys {
			types = append(types, t)
		}
		sort.Strings(types)
		return &ConfigError{Key: key + ".type", Msg: fmt.Sprintf("%q is not one of %s", b.Type, strings.Join(types, ", "))}
	}
	if strings.HasPrefix(b.KeyPrefix, "/") || strings.Contains(b.KeyPrefix, "..") || strings.Contains(b.KeyPrefix, "\\") {
		return &ConfigError{Key: key + ".key_prefix", Msg: "must be relative, without '..' or backslashes"}
	}
	switch b.Type {
	case "local":
		if b.Path == "" {
			return &ConfigError{Key: key + ".path", Msg: "must not be empty"}
		}
		if b.Sync != local.SyncFileSystem && b.Sync != local.SyncFile {
			return &ConfigError{Key: key + ".sync", Msg: fmt.Sprintf("%q is not %q or %q", b.Sync, local.SyncFileSystem, local.SyncFile)}
		}
	case "s3":
		if err := b.S3.Validate(); err != nil {
			var fe *s3.FieldError
			if errors.As(err, &fe) {
				return &ConfigError{Key: key + "." + fe.Key, Msg: fe.Msg}
			}
			return &ConfigError{Key: key, Msg: err.Error()}
		}
	}
	return validateDirect(key, b)
}

// validateDirect checks the direct download keys of one backend.
func validateDirect(key string, b BackendConfig) error {
	if !b.DirectDownloads {
		if b.DirectMaxVerifiedAge != 0 || b.DirectURLTTL != 0 {
			return &ConfigError{Key: key + ".direct_downloads", Msg: "direct_max_verified_age and direct_url_ttl only apply with direct_downloads: true"}
		}
		return nil
	}
	if b.DirectMaxVerifiedAge <= 0 {
		return &ConfigError{Key: key + ".direct_max_verified_age", Msg: "required with direct_downloads: true (e.g. 24h): only content verified that recently is sent straight from the storage service"}
	}
	if b.DirectURLTTL < time.Second || b.DirectURLTTL > s3.MaxDirectURLTTL {
		return &ConfigError{Key: key + ".direct_url_ttl", Msg: fmt.Sprintf("%v must be between 1s and %v", b.DirectURLTTL, s3.MaxDirectURLTTL)}
	}
	return nil
}

// checkBackendKeys rejects keys that belong to another backend type, such
// as an S3 key on a local backend.
func checkBackendKeys(raw any) error {
	m, _ := raw.(map[string]any)
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		b, _ := m[id].(map[string]any)
		typ, _ := b["type"].(string)
		allowed, ok := backendKeys[typ]
		if !ok {
			continue // Validate names the bad type
		}
		keys := make([]string, 0, len(b))
		for k := range b {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !slices.Contains(allowed, k) {
				msg := fmt.Sprintf("not a key of a %s backend (allowed: %s)", typ, strings.Join(allowed, ", "))
				if s := nearest(k, allowed); s != "" {
					msg = fmt.Sprintf("not a key of a %s backend; did you mean %s? (allowed: %s)", typ, s, strings.Join(allowed, ", "))
				}
				return &ConfigError{Key: "backends." + id + "." + k, Msg: msg}
			}
		}
	}
	return nil
}
