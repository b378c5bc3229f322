package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigCheckResolvesCredentials: config check fails, naming the key,
// when a credential reference does not resolve, and never prints a value.
func TestConfigCheckResolvesCredentials(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(`data_dir: `+dir+`
backends:
  rgw:
    type: s3
    endpoint_url: http://127.0.0.1:7480
    bucket: artifacts
    access_key_ref: env:RGW_ACCESS_TEST
    secret_key_ref: file:`+secretFile+`
routing:
  default: rgw
`), 0o600)
	const access, secret = "access-value-91c2", "secret-value-5d7e"
	for _, tc := range []struct {
		name    string
		environ []string
		file    bool
		want    string
	}{
		{"unset variable", nil, true, "backends.rgw.access_key_ref: credential reference env:RGW_ACCESS_TEST: environment variable RGW_ACCESS_TEST is not set"},
		{"empty variable", []string{"RGW_ACCESS_TEST="}, true, "backends.rgw.access_key_ref"},
		{"missing file", []string{"RGW_ACCESS_TEST=" + access}, false, "backends.rgw.secret_key_ref: credential reference file:" + secretFile + ": cannot read the file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(secretFile)
			if tc.file {
				os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
			}
			code, out, errOut := runCLIEnv(t, tc.environ, "config", "check", "--config", cfg)
			if code != 2 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("exit %d, stderr %q, want %q", code, errOut, tc.want)
			}
			if strings.Contains(out+errOut, access) || strings.Contains(out+errOut, secret) {
				t.Fatalf("config check printed a credential value")
			}
		})
	}
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	code, out, errOut := runCLIEnv(t, []string{"RGW_ACCESS_TEST=" + access}, "config", "check", "--config", cfg)
	if code != 0 || !strings.Contains(out, "backends.rgw.secret_key_ref: file:"+secretFile+" resolves") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, access) || strings.Contains(out+errOut, secret) {
		t.Fatalf("config check printed a credential value:\n%s", out)
	}
}
