package app

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// guideBlock returns the fenced block after <!-- guide:NAME --> in
// docs/OPERATOR.md; scripts/operator-guide.sh runs the same blocks.
func guideBlock(t *testing.T, doc, name string) string {
	t.Helper()
	m := regexp.MustCompile("(?s)<!-- guide:" + name + " -->\\s*```[a-z]*\\n(.*?)```").FindStringSubmatch(doc)
	if m == nil {
		t.Fatalf("docs/OPERATOR.md has no <!-- guide:%s --> block", name)
	}
	return m[1]
}

// TestOperatorGuideDocs checks what a reader of docs/OPERATOR.md copies:
// the example config works as written against an http endpoint, the cron
// line is in the format of the file it names, the bucket step says which
// credentials sign it and sets the lifecycle rule, alert texts send nobody
// to an endpoint without saying it needs a token, the config file's owner
// and mode are stated, and the unit's Documentation= file is installed.
func TestOperatorGuideDocs(t *testing.T) {
	b, err := os.ReadFile("../docs/OPERATOR.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)

	t.Run("example config on an http endpoint", func(t *testing.T) {
		dir := t.TempDir()
		cfg := guideBlock(t, doc, "config")
		cfg = strings.ReplaceAll(cfg, "https://rgw.example.internal", "http://127.0.0.1:7480")
		cfg = strings.ReplaceAll(cfg, "/etc/artifactstore", dir+"/etc")
		cfg = strings.ReplaceAll(cfg, "/var/lib/artifactstore", dir+"/var")
		os.MkdirAll(dir+"/etc", 0o750)
		os.WriteFile(dir+"/etc/rgw_access_key", []byte("a\n"), 0o640)
		os.WriteFile(dir+"/etc/rgw_secret_key", []byte("s\n"), 0o640)
		file := filepath.Join(dir, "config.yaml")
		os.WriteFile(file, []byte(cfg), 0o640)
		code, out, errOut := runCLIEnv(t, nil, "config", "check", "--config", file)
		if code != 0 {
			t.Fatalf("the guide's config fails on an http endpoint: exit %d\n%s%s", code, out, errOut)
		}
	})

	t.Run("cron.d line", func(t *testing.T) {
		block := guideBlock(t, doc, "cron")
		if !strings.Contains(block, "/etc/cron.d/") {
			t.Errorf("the cron block does not say it is an /etc/cron.d file:\n%s", block)
		}
		lines := 0
		for _, line := range strings.Split(block, "\n") {
			if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			lines++
			f := strings.Fields(line)
			if len(f) < 7 || f[5] != "artifactstore" || !strings.HasPrefix(f[6], "/") {
				t.Errorf("not a /etc/cron.d line (5 time fields, user artifactstore, absolute command): %q", line)
			}
		}
		if lines != 1 {
			t.Errorf("want one cron line, found %d", lines)
		}
	})

	t.Run("bucket credentials and lifecycle", func(t *testing.T) {
		block := guideBlock(t, doc, "bucket")
		for _, want := range []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "create-bucket", "put-bucket-lifecycle-configuration", "AbortIncompleteMultipartUpload"} {
			if !strings.Contains(block, want) {
				t.Errorf("the bucket step lacks %q", want)
			}
		}
	})

	t.Run("alert texts", func(t *testing.T) {
		m := regexp.MustCompile("(?s)```yaml\\n(groups:.*?)```").FindStringSubmatch(doc)
		if m == nil {
			t.Fatal("no alert rules block")
		}
		var rules struct {
			Groups []struct {
				Rules []struct {
					Alert       string
					Expr        string
					Annotations map[string]string
				}
			}
		}
		if err := yaml.Unmarshal([]byte(m[1]), &rules); err != nil || len(rules.Groups) == 0 {
			t.Fatalf("alert rules do not parse: %v", err)
		}
		for _, r := range rules.Groups[0].Rules {
			for _, text := range r.Annotations {
				for _, ep := range []string{"/v1/health", "/v1/packages", "/v1/events"} {
					if strings.Contains(text, ep) && !strings.Contains(text, "token") {
						t.Errorf("alert %s points at %s, which needs a token, without saying so: %q", r.Alert, ep, text)
					}
				}
			}
			if strings.Contains(r.Expr, "absent(artifactstore_verification") {
				t.Errorf("alert %s waits for an absent series; the verification series exist from start-up", r.Alert)
			}
		}
	})

	t.Run("config file ownership and mode", func(t *testing.T) {
		if !strings.Contains(doc, "install -o root -g artifactstore -m 0640 config.yaml /etc/artifactstore/config.yaml") {
			t.Error("the guide does not install the config file with its owner and mode")
		}
	})

	t.Run("unit Documentation= is installed", func(t *testing.T) {
		unit, err := os.ReadFile("../docs/systemd/artifactstore.service")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^Documentation=file://(\S+)$`).FindSubmatch(unit)
		if m == nil {
			t.Fatal("the unit has no Documentation=file:// line")
		}
		if !strings.Contains(guideBlock(t, doc, "install"), "docs/OPERATOR.md "+string(m[1])) {
			t.Errorf("the guide never installs %s, the unit's Documentation=", m[1])
		}
	})
}
