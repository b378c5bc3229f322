package app

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/client"
)

// TestSecretsNeverPrinted: S3 credentials appear neither in config check
// output nor in the service's logs (debug level, JSON), through publishes,
// fetches, verification and a backend that rejects them.
func TestSecretsNeverPrinted(t *testing.T) {
	servers := s3test.Servers(t)
	srv := servers[0]
	bucket := srv.NewBucket(t)
	const wrong = "wrong-secret-value-7f3a9c"
	t.Setenv("GOOD_ACCESS", srv.AccessKey)
	t.Setenv("GOOD_SECRET", srv.SecretKey)
	t.Setenv("BAD_SECRET", wrong)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "secret-file"), []byte(srv.SecretKey+"\n"), 0o600)
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte(`data_dir: `+dir+`/data
log:
  level: debug
  format: json
backends:
  good:
    type: s3
    endpoint_url: `+srv.Endpoint+`
    bucket: `+bucket.Bucket+`
    access_key_ref: env:GOOD_ACCESS
    secret_key_ref: file:`+dir+`/secret-file
  bad:
    type: s3
    endpoint_url: `+srv.Endpoint+`
    bucket: `+bucket.Bucket+`
    access_key_ref: env:GOOD_ACCESS
    secret_key_ref: env:BAD_SECRET
    max_retries: 1
routing:
  default: good
  rules:
    - producer: bad-*
      backend: bad
`), 0o600)
	secrets := []string{srv.SecretKey, wrong}
	scan := func(where, text string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s contains a secret", where)
			}
		}
	}
	code, out, errOut := runCLI(t, "config", "check", "--config", cfg)
	if code != 0 || !strings.Contains(out, "env:BAD_SECRET") {
		t.Fatalf("config check: exit %d\n%s\n%s", code, out, errOut)
	}
	scan("config check output", out+errOut)

	p := startProc(t, cfg)
	c := clientFor(p)
	secrets = append(secrets, p.token)
	code, created, _ := runCLI(t, "token", "create", "--config", cfg, "--name", "scan", "--scope", "publish", "--producer", "ci")
	if code != 0 || !strings.HasPrefix(created, "ast_") {
		t.Fatalf("token create: %d %q", code, created)
	}
	secrets = append(secrets, strings.TrimSpace(created))
	code, out, errOut = runCLI(t, "token", "ls", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("token ls: %d %s", code, errOut)
	}
	scan("token ls output", out+errOut)
	// A bad token's error does not echo it.
	bad := client.New(p.url)
	bad.Token = strings.TrimSpace(created) + "x"
	_, err := bad.GetPackage(ctxT(t), "sec", "1")
	if err == nil {
		t.Fatal("a wrong token was accepted")
	}
	scan("API error for a wrong token", err.Error())
	files := map[string][]byte{"f": randBytes(5, 9<<20)}
	publish(t, c, manifestOf("sec", "1", "ci", "release", files), files)
	get(t, c, "/v1/packages/sec/1/files/f", nil)
	_, err = c.Begin(ctxT(t), manifestOf("sec", "2", "bad-ci", "release", files))
	if err == nil {
		t.Fatal("publish to a backend with a wrong secret succeeded")
	}
	scan("API error", err.Error())
	_, body := get(t, c, "/readyz", nil)
	scan("/readyz", string(body))
	_, body = get(t, c, "/v1/health", nil)
	scan("/v1/health", string(body))
	_, body = get(t, c, "/metrics", nil)
	scan("/metrics", string(body))
	code, out, errOut = runCLI(t, "verify", "--config", cfg, "--backend", "good")
	scan("verify output", out+errOut)
	code, out, errOut = runCLI(t, "storage", "ls", "--config", cfg)
	scan("storage ls output", out+errOut)
	p.stop(t)
	if !strings.Contains(p.logs.String(), `"level":"DEBUG"`) && !strings.Contains(p.logs.String(), `"msg":"access"`) {
		t.Fatalf("expected JSON logs:\n%s", p.logs.String())
	}
	scan("service log", p.logs.String())
}

// TestOperatorGuide runs scripts/operator-guide.sh, which follows
// docs/OPERATOR.md against the real Ceph RGW and ends with a verified
// package.
func TestOperatorGuide(t *testing.T) {
	var found bool
	for _, s := range s3test.Servers(t) {
		found = found || s.Name == "ceph"
	}
	if !found {
		t.Skip("Ceph RGW is not running (the S3 server list said why)")
	}
	cmd := exec.Command("bash", "../scripts/operator-guide.sh")
	cmd.Env = append(os.Environ(), "ARTIFACTSTORE_BIN="+buildBinary(t), "ROOT="+t.TempDir(), "PORT="+strings.Split(freePort(t), ":")[1])
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("operator guide failed: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "is stored on RGW and verified") {
		t.Fatalf("guide did not reach its end:\n%s", out.String())
	}
}
