package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"
)

// TestUsageErrorsExitTwo: every kind of bad usage exits 2 with one line
// naming the problem and the help to read, never the whole help page.
func TestUsageErrorsExitTwo(t *testing.T) {
	dir := t.TempDir()
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("server:\n  listen: nowhere\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown command", []string{"publish"}, []string{`unknown command "publish"`, "push", "see 'artifactstore --help'"}},
		{"unknown command typo", []string{"pusj"}, []string{`did you mean "push"?`}},
		{"unknown subcommand", []string{"storage", "chek"}, []string{`storage: unknown subcommand "chek"`, `did you mean "check"?`, "see 'artifactstore storage --help'"}},
		{"missing required flags", []string{"push", "site", "2.0.0", "site"}, []string{"push: required flags --producer, --retention-class not given", "see 'artifactstore push --help'"}},
		{"missing required flag", []string{"storage", "check"}, []string{"storage check: required flag --backend not given"}},
		{"unknown flag", []string{"push", "--bogus", "x"}, []string{"push: unknown flag --bogus"}},
		{"unknown flag after args", []string{"pull", "a@1", "--too", "d"}, []string{"unknown flag --too", "did you mean --to?"}},
		{"unknown global flag", []string{"--confg", "x", "version"}, []string{"unknown flag --confg", "did you mean --config?"}},
		{"bad flag value", []string{"ls", "--limit", "many"}, []string{"invalid value \"many\" for flag -limit", "see 'artifactstore ls --help'"}},
		{"missing argument", []string{"show"}, []string{"want exactly one NAME@VERSION"}},
		{"help on an unknown command", []string{"help", "publsh"}, []string{`unknown command "publsh"`}},
		{"config error", []string{"config", "check", "--config", badCfg}, []string{"server.listen"}},
		{"config error wrapped as failure", []string{"token", "ls", "--config", badCfg}, []string{"server.listen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLIEnv(t, nil, tc.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if strings.Contains(out+errOut, "OPTIONS:") || strings.Contains(out+errOut, "USAGE:") {
				t.Errorf("a usage error printed the help page:\n%s%s", out, errOut)
			}
		})
	}
}

// TestEveryHelpStatesExitCodes walks the whole command tree, so commands
// other packages register are covered too.
func TestEveryHelpStatesExitCodes(t *testing.T) {
	a := NewCLI(Env{})
	var paths [][]string
	var walk func(prefix []string, cs []*cli.Command)
	walk = func(prefix []string, cs []*cli.Command) {
		for _, c := range cs {
			p := append(append([]string{}, prefix...), c.Name)
			paths = append(paths, p)
			walk(p, c.Subcommands)
		}
	}
	walk(nil, a.Commands)
	paths = append(paths, nil) // the root
	if len(paths) < 15 {
		t.Fatalf("only %d commands found", len(paths))
	}
	for _, p := range paths {
		code, out, errOut := runCLIEnv(t, nil, append(p, "--help")...)
		if len(p) > 0 {
			// "help CMD ..." is "CMD ... --help".
			if c2, out2, _ := runCLIEnv(t, nil, append([]string{"help"}, p...)...); c2 != 0 || out2 != out {
				t.Errorf("artifactstore help %s: exit %d, differs from --help", strings.Join(p, " "), c2)
			}
		}
		if code != 0 || !strings.Contains(out, "Exit codes: 0 ") || !strings.Contains(out, " 2 bad usage") {
			t.Errorf("artifactstore %s --help: exit %d, no exit codes:\n%s%s", strings.Join(p, " "), code, out, errOut)
		}
	}
}

// TestClientHelpNamesEnvironment: the client commands' help says where the
// server URL and the token come from, and every flag has a description.
func TestClientHelpNamesEnvironment(t *testing.T) {
	for _, cmd := range []string{"push", "pull", "ls", "show", "events"} {
		_, out, _ := runCLIEnv(t, nil, cmd, "--help")
		for _, w := range []string{"ARTIFACTSTORE_URL", "ARTIFACTSTORE_TOKEN ", "ARTIFACTSTORE_TOKEN_FILE"} {
			if !strings.Contains(out, w) {
				t.Errorf("%s --help does not mention %s:\n%s", cmd, strings.TrimSpace(w), out)
			}
		}
		// An OPTIONS line is "   --flag PLACEHOLDER<spaces>description".
		_, opts, _ := strings.Cut(out, "OPTIONS:\n")
		for _, line := range strings.Split(strings.TrimRight(opts, "\n"), "\n") {
			fields := strings.SplitN(strings.TrimSpace(line), "  ", 2)
			if len(fields) < 2 || strings.TrimSpace(fields[1]) == "" || strings.HasPrefix(strings.TrimSpace(fields[1]), "(default") {
				t.Errorf("%s --help: flag without a description: %q", cmd, line)
			}
		}
	}
	_, out, _ := runCLIEnv(t, nil, "token", "create", "--help")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "--expires") && strings.Count(line, "default") != 1 {
			t.Errorf("token create --expires shows %d defaults: %q", strings.Count(line, "default"), line)
		}
	}
}

// TestFlagsAfterArguments: the forms a person types first work, with flags
// after the arguments (urfave/cli v2 alone stops at the first argument).
func TestFlagsAfterArguments(t *testing.T) {
	env := startService(t, localConfig)
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"index.html": []byte("<h1>hi</h1>"), "css/app.css": []byte("body{}")})
	environ := []string{"ARTIFACTSTORE_TOKEN=" + env.token, "ARTIFACTSTORE_URL=" + env.url}
	code, out, errOut := runCLIEnv(t, environ, "push", "site", "2.0.0", src, "--producer", "ci", "--retention-class=release", "--label", "k=v")
	if code != 0 || !strings.Contains(out, "pushed site@2.0.0") {
		t.Fatalf("push with flags after arguments: exit %d\n%s\n%s", code, out, errOut)
	}
	dst := filepath.Join(t.TempDir(), "out")
	code, out, errOut = runCLIEnv(t, environ, "pull", "site@2.0.0", "--to", dst, "--json")
	if code != 0 || !strings.Contains(out, `"bytes_downloaded"`) {
		t.Fatalf("pull with flags after the argument: exit %d\n%s\n%s", code, out, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "css", "app.css")); err != nil || string(b) != "body{}" {
		t.Fatalf("pulled file: %q %v", b, err)
	}
	code, out, errOut = runCLIEnv(t, environ, "show", "site@2.0.0", "--json")
	if code != 0 || !strings.Contains(out, `"k": "v"`) {
		t.Fatalf("show with --json after the argument: exit %d\n%s\n%s", code, out, errOut)
	}
	// "--" ends the flags: what follows is an argument even if it looks like one.
	code, _, errOut = runCLIEnv(t, environ, "show", "--", "--json")
	if code != 2 || !strings.Contains(errOut, `"--json" is not NAME@VERSION`) {
		t.Fatalf("argument after --: exit %d %s", code, errOut)
	}
}

// TestUnauthorizedNamesTheVariable: a 401 tells a CLI user which variable
// to set, with and without a token.
func TestUnauthorizedNamesTheVariable(t *testing.T) {
	env := startService(t, localConfig)
	code, _, errOut := runCLIEnv(t, []string{"ARTIFACTSTORE_URL=" + env.url}, "ls")
	if code != 1 || !strings.Contains(errOut, "set ARTIFACTSTORE_TOKEN") || !strings.Contains(errOut, "no token was sent") {
		t.Fatalf("ls without a token: exit %d %s", code, errOut)
	}
	code, _, errOut = runCLIEnv(t, []string{"ARTIFACTSTORE_URL=" + env.url, "ARTIFACTSTORE_TOKEN=nope"}, "show", "a@1")
	if code != 1 || !strings.Contains(errOut, "ARTIFACTSTORE_TOKEN") || !strings.Contains(errOut, "was refused") {
		t.Fatalf("show with a bad token: exit %d %s", code, errOut)
	}
}

// TestConflictNamesTheDifference: a 409 says what differs.
func TestConflictNamesTheDifference(t *testing.T) {
	env := startService(t, localConfig)
	src := t.TempDir()
	writeTree(t, src, map[string][]byte{"a.txt": []byte("one"), "b.txt": []byte("two")})
	environ := []string{"ARTIFACTSTORE_TOKEN=" + env.token, "ARTIFACTSTORE_URL=" + env.url}
	push := func(class string) (int, string) {
		code, _, errOut := runCLIEnv(t, environ, "push", "--producer", "ci", "--retention-class", class, "c", "1", src)
		return code, errOut
	}
	if code, errOut := push("release"); code != 0 {
		t.Fatalf("push: %d %s", code, errOut)
	}
	if code, errOut := push("nightly"); code != 1 || !strings.Contains(errOut, `retention_class: stored "release", new "nightly"`) {
		t.Fatalf("conflict on a field: exit %d %s", code, errOut)
	}
	os.WriteFile(filepath.Join(src, "b.txt"), []byte("TWO"), 0o644)
	if code, errOut := push("release"); code != 1 || !strings.Contains(errOut, "file b.txt: sha256 stored sha256:") {
		t.Fatalf("conflict on a file: exit %d %s", code, errOut)
	}
}

// TestTokenExpiresTakesDays: --expires reads durations as the config does.
func TestTokenExpiresTakesDays(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte(strings.ReplaceAll(localConfig, "@DIR@", dir)), 0o600)
	code, _, errOut := runCLIEnv(t, nil, "token", "create", "--config", cfg, "--name", "x", "--scope", "read", "--expires", "30")
	if code != 2 || !strings.Contains(errOut, `--expires "30" is not a positive duration`) {
		t.Fatalf("--expires 30: exit %d %s", code, errOut)
	}
	code, out, errOut := runCLIEnv(t, nil, "token", "create", "--config", cfg, "--name", "x", "--scope", "read", "--expires", "30d", "--json")
	if code != 0 {
		t.Fatalf("--expires 30d: exit %d %s", code, errOut)
	}
	var tc tokenCreated
	if err := json.Unmarshal([]byte(out), &tc); err != nil || tc.Record.ExpiresAt == nil {
		t.Fatalf("token create --json: %s (%v)", out, err)
	}
	if d := time.Until(*tc.Record.ExpiresAt); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Fatalf("token expires in %s, want 30 days", d)
	}
}
