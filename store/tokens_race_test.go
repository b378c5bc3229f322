package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestRevokeRacingFirstUseIsNotCached: a revoke that commits between a
// token's first (uncached) database read and the caching of that read must
// win. Before the fix the cache was filled after the revoke had cleared it,
// and the revoked token kept working until the process restarted.
func TestRevokeRacingFirstUseIsNotCached(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "r.db"))
	ctx := context.Background()
	secret, tok, err := s.CreateToken(ctx, "racer", ScopeRead, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	revoked := false
	s.testHookTokenRead = func() {
		if !revoked {
			revoked = true
			if err := s.RevokeToken(ctx, tok.ID); err != nil {
				t.Errorf("revoke: %v", err)
			}
		}
	}
	// The first use read the record before the revoke committed: it may
	// pass (it was linearised before the revoke).
	if _, err := s.Authenticate(ctx, secret); err != nil {
		t.Fatalf("first use: %v", err)
	}
	if !revoked {
		t.Fatal("the hook did not run: the first use did not read the database")
	}
	s.testHookTokenRead = nil
	if _, err := s.Authenticate(ctx, secret); !errors.Is(err, ErrBadToken) {
		t.Fatalf("after the revoke: %v, want ErrBadToken (a revoked token stayed cached)", err)
	}
}
