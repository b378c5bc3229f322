package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestLogsOnStderrResultsOnStdout: with the service stopped (the CLI opens
// the database itself and logs what it does), in both log formats, stdout
// holds only results and every stderr line is a log record.
func TestLogsOnStderrResultsOnStdout(t *testing.T) {
	textLog := regexp.MustCompile(`^time=\S+ level=[A-Z]+ msg=`)
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "c.yaml")
			os.WriteFile(cfg, []byte(strings.ReplaceAll(localConfig, "@DIR@", dir)+"log:\n  format: "+format+"\n  level: debug\n"), 0o600)
			isLog := func(line string) bool {
				if format == "json" {
					var m map[string]any
					return json.Unmarshal([]byte(line), &m) == nil && m["level"] != nil && m["msg"] != nil
				}
				return textLog.MatchString(line)
			}
			sawLog := false
			for _, args := range [][]string{
				{"verify"}, {"verify", "--json"}, {"storage", "verify", "--backend", "local", "--quick"},
				{"storage", "ls"}, {"db", "check"}, {"token", "ls"}, {"backup", "--out", filepath.Join(dir, "b.db")},
			} {
				code, out, errOut := runCLI(t, append(args, "--config", cfg)...)
				if code != 0 {
					t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
				}
				if strings.TrimSpace(out) == "" {
					t.Errorf("%v printed no result on stdout", args)
				}
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					if isLog(line) || strings.Contains(line, `"level"`) || strings.Contains(line, "level=") {
						t.Errorf("%v: a log line on stdout: %s", args, line)
					}
				}
				for _, line := range strings.Split(strings.TrimSpace(errOut), "\n") {
					if line == "" {
						continue
					}
					if !isLog(line) {
						t.Errorf("%v: stderr line is not a %s log record: %q", args, format, line)
					}
					sawLog = true
				}
			}
			if !sawLog {
				t.Errorf("no command logged anything at debug level; the test proves nothing")
			}
		})
	}
}
