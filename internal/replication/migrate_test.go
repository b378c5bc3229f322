package replication

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"artifactstore/backends"
	"artifactstore/internal/registry"
	"artifactstore/store"
)

// TestMigrate: a dry run changes nothing and counts what would move; the
// run copies every content of matching packages to the target, verified,
// removes the source copies, and a second run finds everything in place;
// an interrupted run resumes after its saved cursor; --by-rules brings
// content in line with the rules.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, registry.Route{Backends: []string{"a"}}, "a", "b")
	for i := range 251 {
		f.publish(t, fmt.Sprintf("p%03d", i), []byte(fmt.Sprintf("content %d", i)))
	}
	m := New(f.reg, Options{MigrationPage: 100})
	o := MigrateOptions{From: "a", To: "b", Producer: "ci", RetentionClass: "rel*", DeleteSource: true}

	dry := o
	dry.DryRun = true
	run, err := m.Migrate(ctx, dry, nil)
	if err != nil || run.Copied != 251 || run.Deleted != 251 {
		t.Fatalf("dry run: %+v %v", run, err)
	}
	if locs, _ := f.st.LocationsOn(ctx, "b"); len(locs) != 0 {
		t.Fatalf("the dry run wrote %d locations", len(locs))
	}

	// Interrupt after the first page.
	cctx, cancel := context.WithCancel(ctx)
	pages := 0
	_, err = m.Migrate(cctx, o, func(store.MigrationRun) {
		if pages++; pages == 1 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	st, _ := f.st.GetMigration(ctx, o.key())
	if st.Current == nil || st.Current.Packages != 100 || st.Current.Copied != 100 {
		t.Fatalf("saved state after one page: %+v", st.Current)
	}
	var progress []int
	run, err = m.Migrate(ctx, o, func(r store.MigrationRun) { progress = append(progress, r.Packages) })
	if err != nil || !run.Resumed || run.Copied != 251 || run.Deleted != 251 || run.Failed != 0 || run.Packages != 251 {
		t.Fatalf("resumed run: %+v %v", run, err)
	}
	if fmt.Sprint(progress) != "[200 251]" {
		t.Errorf("progress after pages %v, want [200 251]", progress)
	}
	onA, _ := f.st.LocationsOn(ctx, "a")
	onB, _ := f.st.LocationsOn(ctx, "b")
	if len(onA) != 0 || len(onB) != 251 {
		t.Fatalf("after the migration: %d locations on a, %d on b", len(onA), len(onB))
	}
	for _, l := range onB {
		if l.Status != store.StatusVerified {
			t.Fatalf("copy on b not verified: %+v", l)
		}
	}
	if n := countObjects(t, f, "a"); n != 0 {
		t.Fatalf("a still holds %d objects", n)
	}
	// Idempotent.
	run, err = m.Migrate(ctx, o, nil)
	if err != nil || run.Resumed || run.Copied != 0 || run.Deleted != 0 || run.Contents != 0 {
		t.Fatalf("second run: %+v %v", run, err)
	}

	// By rules: the rule now asks for a and b; everything gets its copy
	// on a back, and with delete-source nothing is removed (both wanted).
	all := map[string]backends.Backend{"a": f.bs["a"], "b": f.bs["b"]}
	f.reg = registry.New(f.st, all, route(registry.Route{Backends: []string{"a", "b"}}), registry.Options{})
	m = New(f.reg, Options{})
	run, err = m.Migrate(ctx, MigrateOptions{ByRules: true, DeleteSource: true}, nil)
	if err != nil || run.Copied != 251 || run.Deleted != 0 {
		t.Fatalf("by rules: %+v %v", run, err)
	}
	if n := countObjects(t, f, "a"); n != 251 {
		t.Fatalf("a holds %d objects after --by-rules, want 251", n)
	}
	if _, err := m.Migrate(ctx, MigrateOptions{From: "a", To: "a"}, nil); !errors.Is(err, ErrBadMigration) {
		t.Fatalf("from = to: %v", err)
	}
}

func countObjects(t *testing.T, f *fixture, id string) int {
	t.Helper()
	n := 0
	if err := f.bs[id].Walk(context.Background(), func(backends.Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}
