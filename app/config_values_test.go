package app

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "10GiB": 10 << 30, "64MiB": 64 << 20, "64 mib": 64 << 20, "1KiB": 1024,
		"2TiB": 2 << 40, "100MB": 100e6, "1.5GB": 1.5e9, "0.5KiB": 512, "7B": 7, "1kb": 1000,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "10 GiBs", "10XB", "1.5B", "-1", "1e3", "10.0.1MiB", "99999999999TiB"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "90s": 90 * time.Second, "1h30m": 90 * time.Minute, "7d": 7 * 24 * time.Hour,
		"2w": 14 * 24 * time.Hour, "1d12h": 36 * time.Hour, "1ms": time.Millisecond,
	} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"30", "1.5", "d", "7dd", "soon", "1h7d", "99999999999999d", "106751d23h47m17s"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %s, want an error", in, got)
		}
	}
}

// TestConfigHumanValues: sizes and durations as a person writes them, in
// the file and in environment variables.
func TestConfigHumanValues(t *testing.T) {
	cfg, err := LoadConfig(LoadOptions{Raw: []byte(`
data_dir: /tmp/x
server:
  max_body_bytes: 10GiB
  max_manifest_bytes: 4 MiB
  upload_session_ttl: 2d
verify:
  bytes_per_second: 100MB
  deep:
    interval: 1w
backends:
  rgw:
    type: s3
    endpoint_url: http://127.0.0.1:7480
    bucket: artifacts
    access_key_ref: env:A
    secret_key_ref: env:B
    multipart_threshold_bytes: 64MiB
    multipart_chunk_bytes: 16MiB
routing:
  default: rgw
`), Environ: []string{"ARTIFACTSTORE_SERVER__IDLE_TIMEOUT=1d", "ARTIFACTSTORE_SERVER__MAX_BODY_BYTES=1GiB"}})
	if err != nil {
		t.Fatal(err)
	}
	rgw := cfg.Backends["rgw"].S3
	if cfg.Server.MaxBodyBytes != 1<<30 || cfg.Server.MaxManifestBytes != 4<<20 || cfg.Server.UploadSessionTTL != 48*time.Hour ||
		cfg.Server.IdleTimeout != 24*time.Hour || cfg.Verify.BytesPerSecond != 100e6 || cfg.Verify.Deep.Interval != 7*24*time.Hour ||
		rgw.MultipartThresholdBytes != 64<<20 || rgw.MultipartChunkBytes != 16<<20 {
		t.Fatalf("config = %+v, s3 %+v", cfg, rgw)
	}
}

// TestConfigErrorsNameTheSource: an error names the key, where it was set
// (file and line, or the variable), and the nearest key for a typo.
func TestConfigErrorsNameTheSource(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte("data_dir: "+dir+"\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, body string
		env        []string
		want       []string
	}{
		{"typo in file", "server:\n  listen: 127.0.0.1:1\n  max_body_byte: 1\n", nil,
			[]string{"server.max_body_byte (" + file + " line 4)", "did you mean server.max_body_bytes?"}},
		{"typo at top level", "verfy:\n  concurrency: 1\n", nil, []string{"verfy (" + file + " line 2)", "did you mean verify?"}},
		{"typo in backend", "backends:\n  b:\n    type: s3\n    endpoint_url: http://h\n    bukcet: x\nrouting:\n  default: b\n", nil,
			[]string{"backends.b.bukcet (" + file + " line 6)", "did you mean backends.b.bucket?"}},
		{"unknown key far from any", "server:\n  frobnicate: 1\n", nil, []string{"unknown key (keys here:", "listen"}},
		{"typo in variable", "", []string{"ARTIFACTSTORE_SERVER__LISTN=127.0.0.1:1"},
			[]string{"server.listn (environment variable ARTIFACTSTORE_SERVER__LISTN)", "did you mean ARTIFACTSTORE_SERVER__LISTEN?"}},
		{"variable overrides the file", "server:\n  max_body_bytes: 1MiB\n", []string{"ARTIFACTSTORE_SERVER__MAX_BODY_BYTES=lots"},
			[]string{"server.max_body_bytes (environment variable ARTIFACTSTORE_SERVER__MAX_BODY_BYTES)", `"lots" is not a size`}},
		{"bad size in file", "server:\n  max_body_bytes: 10GB5\n", nil, []string{"server.max_body_bytes (" + file + " line 3)", "unknown unit"}},
		{"duration without unit", "database:\n  lock_timeout: 5\n", nil, []string{"database.lock_timeout (" + file + " line 3)", "has no unit", "5s"}},
		{"invalid value", "log:\n  level: loud\n", nil, []string{"log.level (" + file + " line 3)", `"loud" is not one of`}},
		{"rule in a list", "backends:\n  a:\n    type: local\n    path: /x\nrouting:\n  rules:\n    - producer: ci\n      backend: b\n", nil,
			[]string{"routing.rules[0].backend (" + file + " line 9)", `unknown backend "b"`}},
		{"not yaml", "server: [\n", nil, []string{file, "not valid YAML"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			write(tc.body)
			_, err := LoadConfig(LoadOptions{File: file, Environ: tc.env})
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("LoadConfig = %v, want a *ConfigError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// Through the CLI: exit 2 and the same message.
	write("server:\n  listn: x\n")
	code, _, errOut := runCLIEnv(t, nil, "config", "check", "--config", file)
	if code != 2 || !strings.Contains(errOut, "did you mean server.listen?") || !strings.Contains(errOut, "line 3") {
		t.Fatalf("config check: exit %d %s", code, errOut)
	}
}

// FuzzConfigValues: the size and duration parsers never panic, never
// return a negative size, and read back what they print.
func FuzzConfigValues(f *testing.F) {
	for _, s := range []string{"10GiB", "64 MiB", "1.5GB", "7d12h", "2w", "90s", "0", "-1h", "99999999999999d", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil {
			if n < 0 {
				t.Fatalf("ParseSize(%q) = %d", s, n)
			}
			if back, err := ParseSize(strconv.FormatInt(n, 10)); err != nil || back != n {
				t.Fatalf("ParseSize(%q) = %d does not read back: %d %v", s, n, back, err)
			}
		}
		if d, err := ParseDuration(s); err == nil {
			if back, err := ParseDuration(d.String()); err != nil || back != d {
				t.Fatalf("ParseDuration(%q) = %s does not read back: %s %v", s, d, back, err)
			}
		}
	})
}
