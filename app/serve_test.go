package app

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeStopsEverythingOnError (finding 8): when Serve fails (the API
// server cannot start TLS, or server.local_listen is taken) it returns
// only after every listener it was given or opened is closed: no API,
// loopback or admin server keeps running behind the caller's back.
func TestServeStopsEverythingOnError(t *testing.T) {
	cases := map[string]func(dir string, busy string) string{
		"bad certificate": func(dir, _ string) string {
			cert := filepath.Join(dir, "junk.pem")
			os.WriteFile(cert, []byte("not a certificate"), 0o600)
			return "  tls_cert_file: " + cert + "\n  tls_key_file: " + cert + "\n  local_listen: " + freePort(t) + "\n"
		},
		"local_listen taken": func(dir, busy string) string {
			return "  local_listen: " + busy + "\n"
		},
	}
	for name, extra := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			yaml := strings.Replace(strings.ReplaceAll(localConfig, "@DIR@", dir), "server:\n", "server:\n"+extra(dir, busy.Addr().String()), 1)
			cfg, err := LoadConfig(LoadOptions{Raw: []byte(yaml)})
			if err != nil {
				t.Fatal(err)
			}
			svc, err := NewService(context.Background(), cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer svc.Close()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			errc := make(chan error, 1)
			go func() { errc <- svc.Serve(context.Background(), ln) }()
			select {
			case err := <-errc:
				if err == nil {
					t.Fatal("Serve returned nil")
				}
				t.Logf("Serve: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not fail")
			}
			addrs := []string{ln.Addr().String()}
			if cfg.Server.LocalListen != busy.Addr().String() {
				addrs = append(addrs, cfg.Server.LocalListen)
			}
			for _, a := range addrs {
				if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
					c.Close()
					t.Fatalf("%s still accepts connections after Serve returned", a)
				}
			}
			if c, err := net.DialTimeout("unix", cfg.AdminSocket(), time.Second); err == nil {
				c.Close()
				t.Fatal("the admin socket still answers after Serve returned")
			}
		})
	}
}
