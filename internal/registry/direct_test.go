package registry

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"artifactstore/backends"
	"artifactstore/internal/digest"
	"artifactstore/store"
)

// linker is a backend that hands out direct URLs (or fails to); nothing
// else of the SPI is used here.
type linker struct {
	backends.Backend
	id   string
	fail bool
}

func (l *linker) ID() string { return l.id }
func (l *linker) DirectURL(ctx context.Context, d digest.Digest, ttl time.Duration) (string, error) {
	if l.fail {
		return "", errors.New("cannot sign")
	}
	return "https://" + l.id + ".example/" + d.Hex + "?ttl=" + ttl.String(), nil
}

// plain cannot hand out direct URLs.
type plain struct {
	backends.Backend
	id string
}

func (p *plain) ID() string { return p.id }

func TestDirectURLOnlyForRecentlyVerifiedLocations(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(filepath.Join(t.TempDir(), "r.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	bs := map[string]backends.Backend{
		"near":   &linker{id: "near"},
		"broken": &linker{id: "broken", fail: true},
		"off":    &linker{id: "off"},
		"local":  &plain{id: "local"},
	}
	r := New(st, bs, nil, Options{})
	for name, pol := range map[string]map[string]DirectPolicy{
		"unknown backend":      {"nowhere": {MaxVerifiedAge: time.Hour, URLTTL: time.Minute}},
		"backend without URLs": {"local": {MaxVerifiedAge: time.Hour, URLTTL: time.Minute}},
		"no max age":           {"near": {URLTTL: time.Minute}},
		"no lifetime":          {"near": {MaxVerifiedAge: time.Hour}},
	} {
		var ce *DirectConfigError
		if err := r.EnableDirectDownloads(pol); !errors.As(err, &ce) {
			t.Errorf("%s: err = %v, want a DirectConfigError", name, err)
		}
	}
	pol := DirectPolicy{MaxVerifiedAge: time.Hour, URLTTL: 3 * time.Minute}
	if err := r.EnableDirectDownloads(map[string]DirectPolicy{"near": pol, "broken": pol}); err != nil {
		t.Fatal(err)
	}
	// One content per case, each on one backend.
	put := func(name, backend string) digest.Digest {
		d := digest.FromBytes([]byte(name))
		err := st.ImportPackages(ctx, []store.Package{{Name: name, Version: "1", Producer: "p", RetentionClass: "c",
			Files: []store.File{{Path: "f", Size: int64(len(name)), Digest: d.String()}}}}, backend)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	verdict := func(d digest.Digest, backend, v string, at time.Time) {
		if err := st.RecordVerdict(ctx, store.Verdict{Digest: d.String(), Backend: backend, Mode: store.ModeDeep, Verdict: v, At: at}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	fresh := put("fresh", "near")
	verdict(fresh, "near", store.StatusVerified, now.Add(-time.Minute))
	stored := put("stored", "near")
	old := put("old", "near")
	verdict(old, "near", store.StatusVerified, now.Add(-2*time.Hour))
	failed := put("failed", "near")
	verdict(failed, "near", store.StatusVerified, now.Add(-time.Minute))
	verdict(failed, "near", store.StatusMismatch, now)
	future := put("future", "near") // verified "in an hour": the clock was stepped back since
	verdict(future, "near", store.StatusVerified, now.Add(time.Hour))
	offB := put("off", "off")
	verdict(offB, "off", store.StatusVerified, now)
	brokenB := put("broken", "broken")
	verdict(brokenB, "broken", store.StatusVerified, now)

	for name, tc := range map[string]struct {
		d    digest.Digest
		want string
	}{
		"verified a minute ago":            {fresh, "https://near.example/" + fresh.Hex + "?ttl=3m0s"},
		"stored, never verified":           {stored, ""},
		"verified longer ago than allowed": {old, ""},
		"failed after a verification":      {failed, ""},
		"verified at a time still to come": {future, ""},
		"backend without direct downloads": {offB, ""},
		"backend that fails to sign":       {brokenB, ""},
	} {
		u, backend, err := r.DirectURL(ctx, tc.d)
		if err != nil || u != tc.want || (u != "" && backend != "near") {
			t.Errorf("%s: DirectURL = %q, %q, %v; want %q", name, u, backend, err, tc.want)
		}
	}
}
