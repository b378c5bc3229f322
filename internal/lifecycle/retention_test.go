package lifecycle

import (
	"testing"
	"time"

	"artifactstore/store"
)

func TestRetentionVerdict(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	pkg := func(ageDays int, labels map[string]string) *store.Package {
		return &store.Package{CreatedAt: now.Add(-time.Duration(ageDays) * 24 * time.Hour), Labels: labels}
	}
	keep := map[string]string{"keep": "true"}
	cases := []struct {
		name   string
		pol    Policy
		rank   int
		p      *store.Package
		delete bool
	}{
		{"newest of keep_last 3", Policy{KeepLast: 3}, 0, pkg(100, nil), false},
		{"third of keep_last 3", Policy{KeepLast: 3}, 2, pkg(100, nil), false},
		{"fourth of keep_last 3", Policy{KeepLast: 3}, 3, pkg(0, nil), true},
		{"fourth but labelled", Policy{KeepLast: 3, KeepLabel: "keep=true"}, 3, pkg(0, keep), false},
		{"label with another value", Policy{KeepLast: 3, KeepLabel: "keep=true"}, 3, pkg(0, map[string]string{"keep": "no"}), true},
		{"label key only", Policy{KeepLast: 3, KeepLabel: "keep"}, 3, pkg(0, map[string]string{"keep": "no"}), false},
		{"younger than max_age", Policy{MaxAge: 30 * 24 * time.Hour}, 50, pkg(29, nil), false},
		{"older than max_age", Policy{MaxAge: 30 * 24 * time.Hour}, 0, pkg(31, nil), true},
		{"old but labelled", Policy{MaxAge: 30 * 24 * time.Hour, KeepLabel: "keep=true"}, 0, pkg(31, keep), false},
		{"never_delete", Policy{NeverDelete: true}, 99, pkg(999, nil), false},
		{"no limits", Policy{}, 99, pkg(999, nil), false},
	}
	for _, c := range cases {
		got := verdict(c.pol, c.rank, c.p, now) != ""
		if got != c.delete {
			t.Errorf("%s: delete=%v, want %v", c.name, got, c.delete)
		}
	}
	if (Policy{NeverDelete: true, KeepLast: 1}).Active() || (Policy{}).Active() || !(Policy{MaxAge: time.Hour}).Active() {
		t.Error("Policy.Active is wrong")
	}
}
