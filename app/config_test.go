package app

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"artifactstore/internal/registry"
)

func writeCfg(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "127.0.0.1:8080" || cfg.Routing.Default != "local" || cfg.Backends["local"].Type != "local" {
		t.Fatalf("defaults = %+v", cfg)
	}
	if cfg.Backends["local"].Path != filepath.Join("data", "objects") || cfg.Database.Path != filepath.Join("data", "registry.db") {
		t.Fatalf("derived paths = %q, %q", cfg.Backends["local"].Path, cfg.Database.Path)
	}
}

func TestConfigExampleIsValidAndMatchesDefaults(t *testing.T) {
	ex, err := LoadConfig(LoadOptions{File: "../config.example.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	def, _ := LoadConfig(LoadOptions{})
	if ex.Server != def.Server || ex.Database != def.Database || ex.Log != def.Log || ex.DataDir != def.DataDir {
		t.Fatalf("config.example.yaml differs from the embedded defaults:\n%+v\n%+v", ex, def)
	}
}

func TestConfigLayers(t *testing.T) {
	file := writeCfg(t, "server:\n  listen: 127.0.0.1:9000\n  idle_timeout: 5m\nlog:\n  level: warn\n")
	cfg, err := LoadConfig(LoadOptions{
		File:    file,
		Environ: []string{"ARTIFACTSTORE_SERVER__LISTEN=127.0.0.1:9001", "ARTIFACTSTORE_SERVER__MAX_BODY_BYTES=1234", "ARTIFACTSTORE_CONFIG=ignored", "OTHER=x"},
		Flags:   map[string]any{"log.level": "debug"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Listen != "127.0.0.1:9001" {
		t.Errorf("env did not override file: listen %q", cfg.Server.Listen)
	}
	if cfg.Server.MaxBodyBytes != 1234 {
		t.Errorf("env int: %d", cfg.Server.MaxBodyBytes)
	}
	if cfg.Server.IdleTimeout != 5*time.Minute {
		t.Errorf("file duration: %s", cfg.Server.IdleTimeout)
	}
	if cfg.Log.Level != "debug" {
		t.Errorf("flag did not override file: %q", cfg.Log.Level)
	}
}

// twoLocal configures two local backends, x and y.
const twoLocal = "backends:\n  x:\n    type: local\n    path: /tmp/x\n  y:\n    type: local\n    path: /tmp/y\n"

func TestConfigErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, yaml string
		env        []string
		key        string
	}{
		{"unknown top-level key", "colour: blue\n", nil, "colour"},
		{"unknown nested key", "server:\n  listn: x\n", nil, "server.listn"},
		{"unknown env key", "", []string{"ARTIFACTSTORE_SERVER__LISTN=x"}, "server.listn"},
		{"bad listen", "server:\n  listen: nowhere\n", nil, "server.listen"},
		{"bad duration", "server:\n  idle_timeout: soon\n", nil, "idle_timeout"},
		{"negative size", "server:\n  max_body_bytes: -1\n", nil, "server.max_body_bytes"},
		{"bad log level", "log:\n  level: loud\n", nil, "log.level"},
		{"bad backend type", "backends:\n  x:\n    type: tape\nrouting:\n  default: x\n", nil, "backends.x.type"},
		{"key of another type", "backends:\n  x:\n    type: local\n    path: /tmp/x\n    endpoint_url: http://h\nrouting:\n  default: x\n", nil, "backends.x.endpoint_url"},
		{"bad local sync", "backends:\n  x:\n    type: local\n    path: /tmp/x\n    sync: sometimes\nrouting:\n  default: x\n", nil, "backends.x.sync"},
		{"unknown backend key", "backends:\n  x:\n    type: local\n    colour: red\nrouting:\n  default: x\n", nil, "backends.x.colour"},
		{"bad backend id", "backends:\n  Bad/Id:\n    type: local\n    path: /tmp/x\nrouting:\n  default: Bad/Id\n", nil, "backends.Bad/Id"},
		{"default names unknown backend", "routing:\n  default: nowhere\n", nil, "routing.default"},
		{"rule names unknown backend", "routing:\n  default: local\n  rules:\n    - producer: ci\n      backend: nowhere\n", nil, "routing.rules[0].backend"},
		{"unknown rule key", "routing:\n  default: local\n  rules:\n    - producr: ci\n      backend: local\n", nil, "routing.rules[0].producr"},
		{"bad glob", "routing:\n  default: local\n  rules:\n    - producer: '[ci'\n      backend: local\n", nil, "routing.rules[0].producer"},
		{"no default and no rules", "backends:\n  x:\n    type: local\n    path: /tmp/x\n", nil, "routing.default"},
		{"duplicate backend id", "backends:\n  x:\n    type: local\n  x:\n    type: local\n", nil, `"x" already defined`},
		{"copies: unknown backend", twoLocal + "routing:\n  default: x\n  rules:\n    - producer: ci\n      backends: [x, nowhere]\n", nil, "routing.rules[0].backends[1]"},
		{"copies: same backend twice", twoLocal + "routing:\n  default_backends: [x, y, x]\n", nil, "routing.default_backends[2]"},
		{"copies: min_copies above the count", twoLocal + "routing:\n  default: x\n  rules:\n    - producer: ci\n      backends: [x, y]\n      min_copies: 3\n", nil, "routing.rules[0].min_copies"},
		{"copies: negative min_copies", twoLocal + "routing:\n  default_backends: [x, y]\n  default_min_copies: -1\n", nil, "routing.default_min_copies"},
		{"copies: backend and backends", twoLocal + "routing:\n  default: x\n  rules:\n    - producer: ci\n      backend: x\n      backends: [x, y]\n", nil, "routing.rules[0].backends"},
		{"copies: default and default_backends", twoLocal + "routing:\n  default: x\n  default_backends: [x, y]\n", nil, "routing.default_backends"},
		{"copies: rule without a backend", twoLocal + "routing:\n  default: x\n  rules:\n    - producer: ci\n", nil, "routing.rules[0].backend"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadConfig(LoadOptions{File: writeCfg(t, c.yaml), Environ: c.env})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.key) {
				t.Fatalf("error %q does not name %q", err, c.key)
			}
			var ce *ConfigError
			if strings.HasPrefix(c.key, "backends") || strings.HasPrefix(c.key, "routing") || strings.HasPrefix(c.key, "log") {
				if !errors.As(err, &ce) {
					t.Fatalf("error %T is not a *ConfigError", err)
				}
			}
		})
	}
}

func TestConfigCheckCommand(t *testing.T) {
	var out, errb bytes.Buffer
	code := Main(t.Context(), []string{"artifactstore", "config", "check", "--config", "../config.example.yaml"},
		Env{Stdout: &out, Stderr: &errb, Environ: []string{"ARTIFACTSTORE_LOG__LEVEL=debug"}})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "level: debug") || !strings.Contains(out.String(), "listen: 127.0.0.1:8080") {
		t.Fatalf("effective config not printed:\n%s", out.String())
	}
	out.Reset()
	errb.Reset()
	code = Main(t.Context(), []string{"artifactstore", "config", "check", "--config", writeCfg(t, "bogus: 1\n")}, Env{Stdout: &out, Stderr: &errb})
	if code == 0 || !strings.Contains(errb.String(), "bogus") {
		t.Fatalf("bad config: exit %d, stderr %q", code, errb.String())
	}
}

func TestRouterCopies(t *testing.T) {
	cfg, err := LoadConfig(LoadOptions{Raw: []byte(twoLocal + "routing:\n  default_backends: [y, x]\n  default_min_copies: 1\n  rules:\n    - retention_class: release\n      backends: [x, y]\n")})
	if err != nil {
		t.Fatal(err)
	}
	r := router{rules: cfg.Routing.Rules, def: cfg.Routing.defaultRoute()}
	if got := r.Route("ci", "release"); fmt.Sprint(got.Backends) != "[x y]" || got.MinCopies != 0 {
		t.Errorf("release routes to %+v, want x and y, all before commit", got)
	}
	if got := r.Route("ci", "nightly"); fmt.Sprint(got.Backends) != "[y x]" || got.MinCopies != 1 {
		t.Errorf("default routes to %+v, want y and x, one before commit", got)
	}
}

func TestRouter(t *testing.T) {
	r := router{def: registry.Route{Backends: []string{"d"}}, rules: []RuleConfig{
		{Producer: "ci-*", RetentionClass: "release", Backend: "rgw"},
		{RetentionClass: "nightly", Backend: "cheap"},
		{Producer: "alice", Backend: "local"},
	}}
	cases := []struct{ producer, class, want string }{
		{"ci-main", "release", "rgw"},
		{"ci-main", "nightly", "cheap"},
		{"bob", "nightly", "cheap"},
		{"alice", "release", "local"},
		{"bob", "release", "d"},
		{"ci", "release", "d"},
	}
	for _, c := range cases {
		if got := r.Route(c.producer, c.class).Primary(); got != c.want {
			t.Errorf("Route(%s, %s) = %s, want %s", c.producer, c.class, got, c.want)
		}
	}
}

func FuzzConfig(f *testing.F) {
	f.Add([]byte("server:\n  listen: 127.0.0.1:1\n"))
	f.Add([]byte("backends:\n  x:\n    type: local\n    path: /tmp/x\nrouting:\n  default: x\n"))
	f.Add([]byte("routing:\n  rules:\n    - producer: '*'\n      backend: local\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		cfg, err := LoadConfig(LoadOptions{Raw: raw})
		if err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("LoadConfig returned a config that fails Validate: %v", err)
		}
	})
}
