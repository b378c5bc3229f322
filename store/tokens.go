package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Token scopes, each including the ones before it.
const (
	ScopeRead    = "read"
	ScopePublish = "publish"
	ScopeAdmin   = "admin"
)

// ErrBadToken means a presented token is unknown, malformed, revoked or
// expired. Callers answer 401 and never say which.
var ErrBadToken = errors.New("invalid token")

// Token is an access token's record. The secret is never stored: only its
// sha256, compared in constant time.
type Token struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Scope     string     `json:"scope"`
	Producers []string   `json:"producers,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	Hash      string     `json:"hash,omitempty"`
}

// Allows reports whether the token's scope covers want.
func (t *Token) Allows(want string) bool {
	rank := map[string]int{ScopeRead: 1, ScopePublish: 2, ScopeAdmin: 3}
	return rank[t.Scope] >= rank[want] && rank[want] > 0
}

// MayPublishAs reports whether the token may publish for producer.
func (t *Token) MayPublishAs(producer string) bool {
	if t.Scope == ScopeAdmin {
		return true
	}
	if t.Scope != ScopePublish {
		return false
	}
	for _, p := range t.Producers {
		if p == producer {
			return true
		}
	}
	return false
}

const tokenPrefix = "ast_"

// CreateToken stores a new token and returns its secret form
// "ast_<id>_<secret>", which is shown once and never stored.
func (s *Store) CreateToken(ctx context.Context, name, scope string, producers []string, ttl time.Duration) (string, *Token, error) {
	switch scope {
	case ScopeRead, ScopePublish, ScopeAdmin:
	default:
		return "", nil, fmt.Errorf("scope %q is not one of read, publish, admin", scope)
	}
	if scope == ScopePublish && len(producers) == 0 {
		return "", nil, errors.New("a publish token needs at least one --producer")
	}
	if scope != ScopePublish && len(producers) > 0 {
		return "", nil, fmt.Errorf("--producer only applies to publish tokens")
	}
	if name == "" || len(name) > 128 {
		return "", nil, errors.New("a token needs a name of 1-128 characters")
	}
	var idb [6]byte
	var secret [32]byte
	rand.Read(idb[:])
	rand.Read(secret[:])
	id := hex.EncodeToString(idb[:])
	sec := base64.RawURLEncoding.EncodeToString(secret[:])
	sum := sha256.Sum256([]byte(sec))
	t := &Token{ID: id, Name: name, Scope: scope, Producers: producers, CreatedAt: s.now().UTC(), Hash: hex.EncodeToString(sum[:])}
	if ttl > 0 {
		exp := t.CreatedAt.Add(ttl)
		t.ExpiresAt = &exp
	}
	v, err := encode(t)
	if err != nil {
		return "", nil, err
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTokens).Put([]byte(id), v) }); err != nil {
		return "", nil, err
	}
	out := *t
	out.Hash = ""
	return tokenPrefix + id + "_" + sec, &out, nil
}

// Authenticate returns the token a secret belongs to, or ErrBadToken.
func (s *Store) Authenticate(ctx context.Context, presented string) (*Token, error) {
	rest, ok := strings.CutPrefix(presented, tokenPrefix)
	if !ok {
		return nil, ErrBadToken
	}
	id, sec, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 12 || sec == "" {
		return nil, ErrBadToken
	}
	var t Token
	var err error
	if v, ok := s.tokens.Load(id); ok {
		t = v.(Token)
	} else {
		s.tokenMu.Lock()
		gen := s.tokenGen
		s.tokenMu.Unlock()
		err = s.db.View(func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketTokens).Get([]byte(id))
			if v == nil {
				return ErrBadToken
			}
			return decode(v, &t)
		})
		if s.testHookTokenRead != nil {
			s.testHookTokenRead()
		}
		// A revoke that committed after our read bumped tokenGen: then the
		// record may be gone already, and caching it would revive it.
		s.tokenMu.Lock()
		if err == nil && s.tokenGen == gen {
			s.tokens.Store(id, t)
		}
		s.tokenMu.Unlock()
	}
	// Hash even when the id is unknown, so timing does not tell ids apart.
	sum := sha256.Sum256([]byte(sec))
	got := hex.EncodeToString(sum[:])
	if err != nil {
		subtle.ConstantTimeCompare([]byte(got), []byte(got))
		return nil, ErrBadToken
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(t.Hash)) != 1 {
		return nil, ErrBadToken
	}
	if t.ExpiresAt != nil && !s.now().Before(*t.ExpiresAt) {
		return nil, ErrBadToken
	}
	t.Hash = ""
	return &t, nil
}

// ListTokens returns every token without its hash, oldest first.
func (s *Store) ListTokens(ctx context.Context) ([]Token, error) {
	var out []Token
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTokens).ForEach(func(k, v []byte) error {
			var t Token
			if err := decode(v, &t); err != nil {
				return err
			}
			t.Hash = ""
			out = append(out, t)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, err
}

// RevokeToken deletes a token by id; ErrNotFound if there is none.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b.Get([]byte(id)) == nil {
			return fmt.Errorf("token %q: %w", id, ErrNotFound)
		}
		return b.Delete([]byte(id))
	})
	s.tokenMu.Lock()
	s.tokenGen++
	s.tokens.Delete(id)
	s.tokenMu.Unlock()
	return err
}
