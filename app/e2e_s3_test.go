package app

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"artifactstore/backends/s3"
	"artifactstore/backends/s3/s3test"
	"artifactstore/internal/client"
)

// s3BackendYAML renders one s3 backend entry of a config file.
func s3BackendYAML(id string, c s3.Config) string {
	return fmt.Sprintf(`  %s:
    type: s3
    endpoint_url: %s
    bucket: %s
    key_prefix: artifacts
    access_key_ref: %s
    secret_key_ref: %s
    multipart_threshold_bytes: 8388608
    multipart_chunk_bytes: 5242880
`, id, c.EndpointURL, c.Bucket, c.AccessKeyRef, c.SecretKeyRef)
}

// TestE2ES3 runs the end-to-end suite unchanged against each real S3
// server alone; only the config differs from TestE2ELocal.
func TestE2ES3(t *testing.T) {
	for _, srv := range s3test.Servers(t) {
		t.Run(srv.Name, func(t *testing.T) {
			cfg := srv.NewBucket(t)
			yaml := "data_dir: @DIR@/data\nserver:\n  max_body_bytes: 33554432\nbackends:\n" +
				s3BackendYAML(srv.Name, cfg) + "routing:\n  default: " + srv.Name + "\n"
			env := startService(t, yaml)
			runE2E(t, env, e2eRoutes{{"ci-a", "release"}, {"ci-b", "nightly"}})
		})
	}
}

// TestE2EMixed runs the same suite against one config whose rules send
// different producers and retention classes to different backends.
func TestE2EMixed(t *testing.T) {
	servers := s3test.Servers(t)
	var b strings.Builder
	b.WriteString("data_dir: @DIR@/data\nserver:\n  max_body_bytes: 33554432\nbackends:\n  local:\n    type: local\n    path: @DIR@/objects\n    key_prefix: artifacts\n")
	var rules strings.Builder
	var routes e2eRoutes
	for i, srv := range servers {
		b.WriteString(s3BackendYAML(srv.Name, srv.NewBucket(t)))
		fmt.Fprintf(&rules, "    - producer: ci-%s-*\n      retention_class: release\n      backend: %s\n", srv.Name, srv.Name)
		routes = append(routes, e2eRoute{fmt.Sprintf("ci-%s-%d", srv.Name, i), "release"})
	}
	// Anything nightly goes to the first S3 server whatever the producer;
	// everything else stays local.
	fmt.Fprintf(&rules, "    - retention_class: nightly\n      backend: %s\n", servers[0].Name)
	routes = append(routes, e2eRoute{"someone", "nightly"}, e2eRoute{"someone", "release"})
	b.WriteString("routing:\n  default: local\n  rules:\n" + rules.String())
	env := startService(t, b.String())
	runE2E(t, env, routes)

	// The suite checks each file landed where begin said; here we check
	// begin said what the rules say.
	want := map[e2eRoute]string{{"someone", "nightly"}: servers[0].Name, {"someone", "release"}: "local"}
	for i, srv := range servers {
		want[routes[i]] = srv.Name
	}
	for rt, backend := range want {
		br, err := env.c.Begin(ctxT(t), manifestOf("routing-probe", rt.producer, rt.producer, rt.class, map[string][]byte{"x": []byte("probe")}))
		if err != nil {
			t.Fatal(err)
		}
		if br.Backend != backend {
			t.Errorf("producer %s, class %s routed to %s, want %s", rt.producer, rt.class, br.Backend, backend)
		}
		env.c.Abort(ctxT(t), br.UploadID)
	}
}

// TestDedupIsPerBackend: content stored in backend A but routed to B is
// stored in B too and gets its own location.
func TestDedupIsPerBackend(t *testing.T) {
	servers := s3test.Servers(t)
	srv := servers[len(servers)-1]
	yaml := "data_dir: @DIR@/data\nbackends:\n  local:\n    type: local\n    path: @DIR@/objects\n" +
		s3BackendYAML("remote", srv.NewBucket(t)) +
		"routing:\n  default: local\n  rules:\n    - retention_class: release\n      backend: remote\n"
	env := startService(t, yaml)
	shared := randBytes(11, 1<<20)
	files := map[string][]byte{"shared.bin": shared}
	publish(t, env.c, manifestOf("dd-local", "1", "ci", "nightly", files), files)
	_, br, _ := publish(t, env.c, manifestOf("dd-remote", "1", "ci", "release", files), files)
	if br.Backend != "remote" || len(br.Needed) != 1 {
		t.Fatalf("content held only by local was not asked for on remote: backend %s, needed %+v", br.Backend, br.Needed)
	}
	locs, err := env.svc.Store.Locations(ctxT(t), "sha256:"+sha(shared))
	if err != nil || len(locs) != 2 || locs[0].Backend != "local" || locs[1].Backend != "remote" {
		t.Fatalf("locations = %+v, %v; want one on local and one on remote", locs, err)
	}
	p, _ := env.c.GetPackage(ctxT(t), "dd-remote", "1")
	if len(p.Files[0].Locations) != 2 {
		t.Fatalf("manifest shows %d locations", len(p.Files[0].Locations))
	}
	// A third package routed to remote needs nothing.
	br2, _ := env.c.Begin(ctxT(t), manifestOf("dd-remote", "2", "ci", "release", files))
	if len(br2.Needed) != 0 {
		t.Fatalf("second remote package asks for %+v", br2.Needed)
	}
	env.c.Abort(ctxT(t), br2.UploadID)
	assertConsistent(t, env.svc)
}

// TestSwitchLocalToRGWByConfig is the smoke test: publish on a local-only
// config, restart the same data directory with a config that routes to
// Ceph RGW, publish again, and fetch both.
func TestSwitchLocalToRGWByConfig(t *testing.T) {
	var rgw *s3test.Server
	for _, s := range s3test.Servers(t) {
		if s.Name == "ceph" {
			rgw = &s
		}
	}
	if rgw == nil {
		t.Skip("Ceph RGW is not running (the S3 server list said why)")
	}
	dir := t.TempDir()
	localYAML := strings.ReplaceAll(localConfig, "@DIR@", dir)
	cfgFile := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgFile, []byte(localYAML), 0o600)
	env := startServiceFile(t, cfgFile, nil)
	old := map[string][]byte{"old.bin": randBytes(21, 9<<20)}
	publish(t, env.c, manifestOf("switch", "1", "ci", "release", old), old)
	env.stop()

	// Same data_dir, one more backend, default routed to it.
	rgwYAML := strings.Replace(localYAML, "routing:\n  default: local\n", "", 1)
	rgwYAML = strings.Replace(rgwYAML, "backends:\n", "backends:\n"+s3BackendYAML("rgw", rgw.NewBucket(t)), 1) + "routing:\n  default: rgw\n"
	os.WriteFile(cfgFile, []byte(rgwYAML), 0o600)
	env = startServiceFile(t, cfgFile, nil)
	newer := map[string][]byte{"new.bin": randBytes(22, 9<<20)}
	_, br, _ := publish(t, env.c, manifestOf("switch", "2", "ci", "release", newer), newer)
	if br.Backend != "rgw" {
		t.Fatalf("after the switch, publish went to %s", br.Backend)
	}
	for v, files := range map[string]map[string][]byte{"1": old, "2": newer} {
		for path, data := range files {
			_, body := get(t, env.c, client.FilePath("switch", v, path), nil)
			if !bytes.Equal(body, data) {
				t.Fatalf("switch@%s %s differs after the switch", v, path)
			}
		}
	}
	p1, _ := env.c.GetPackage(ctxT(t), "switch", "1")
	p2, _ := env.c.GetPackage(ctxT(t), "switch", "2")
	if p1.Files[0].Locations[0].Backend != "local" || p2.Files[0].Locations[0].Backend != "rgw" {
		t.Fatalf("locations: old on %s, new on %s", p1.Files[0].Locations[0].Backend, p2.Files[0].Locations[0].Backend)
	}
	assertConsistent(t, env.svc)
}
