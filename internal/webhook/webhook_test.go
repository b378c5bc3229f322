package webhook

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"artifactstore/store"
)

func TestSignAndVerify(t *testing.T) {
	secret := []byte("0123456789abcdef-secret")
	body := []byte(`{"seq":7,"type":"v1.package.created"}`)
	now := time.Unix(1_800_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := Sign(secret, now.Unix(), body)
	if err := Verify(secret, ts, sig, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("valid delivery rejected: %v", err)
	}
	cases := []struct {
		name          string
		secret        []byte
		ts, sig, body string
		at            time.Time
		want          error
	}{
		{"tampered body", secret, ts, sig, `{"seq":8,"type":"v1.package.created"}`, now, ErrBadSignature},
		{"other secret", []byte("another-secret-of-16"), ts, sig, string(body), now, ErrBadSignature},
		{"timestamp changed to look fresh", secret, strconv.FormatInt(now.Unix()+600, 10), sig, string(body), now.Add(10 * time.Minute), ErrBadSignature},
		{"replayed later", secret, ts, sig, string(body), now.Add(6 * time.Minute), ErrStale},
		{"from the future", secret, ts, sig, string(body), now.Add(-6 * time.Minute), ErrStale},
		{"no timestamp", secret, "", sig, string(body), now, ErrBadSignature},
		{"no signature", secret, ts, "", string(body), now, ErrBadSignature},
	}
	for _, c := range cases {
		if err := Verify(c.secret, c.ts, c.sig, []byte(c.body), c.at, 5*time.Minute); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestMatches(t *testing.T) {
	pkg := &store.Event{Type: "v1.package.created", Data: []byte(`{"producer":"ci-linux","retention_class":"release"}`)}
	loc := &store.Event{Type: "v1.storage.location_failed", Data: []byte(`{"digest":"sha256:00","backend":"local"}`)}
	cases := []struct {
		name     string
		sub      store.Subscription
		pkg, loc bool
	}{
		{"everything", store.Subscription{}, true, true},
		{"package glob", store.Subscription{Types: []string{"v1.package.*"}}, true, false},
		{"two globs", store.Subscription{Types: []string{"v1.package.*", "v1.storage.location_failed"}}, true, true},
		{"exact type", store.Subscription{Types: []string{"v1.storage.location_failed"}}, false, true},
		{"producer glob", store.Subscription{Producer: "ci-*"}, true, false},
		{"producer mismatch", store.Subscription{Producer: "nightly"}, false, false},
		{"retention class", store.Subscription{RetentionClass: "release"}, true, false},
		{"retention class mismatch", store.Subscription{RetentionClass: "scratch"}, false, false},
		{"both filters", store.Subscription{Producer: "ci-*", RetentionClass: "rel*"}, true, false},
	}
	for _, c := range cases {
		if got := Matches(&c.sub, pkg); got != c.pkg {
			t.Errorf("%s: package event matched %v, want %v", c.name, got, c.pkg)
		}
		if got := Matches(&c.sub, loc); got != c.loc {
			t.Errorf("%s: storage event matched %v, want %v", c.name, got, c.loc)
		}
	}
}

func TestValidate(t *testing.T) {
	good := store.Subscription{ID: "deploy-1", URL: "https://hooks.example.com/a", Types: []string{"v1.package.*"}}
	if err := Validate(&good); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		field string
		sub   store.Subscription
	}{
		{"id", store.Subscription{ID: "Deploy!", URL: good.URL}},
		{"url", store.Subscription{ID: "a", URL: "ftp://x/y"}},
		{"url", store.Subscription{ID: "a", URL: "/relative"}},
		{"url", store.Subscription{ID: "a", URL: "https://user:pw@x/"}},
		{"types[0]", store.Subscription{ID: "a", URL: good.URL, Types: []string{"v1.[package"}}},
		{"producer", store.Subscription{ID: "a", URL: good.URL, Producer: "["}},
		{"retention_class", store.Subscription{ID: "a", URL: good.URL, RetentionClass: "["}},
	}
	for _, c := range bad {
		var fe *FieldError
		if err := Validate(&c.sub); !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: %v, want an error on %s", c.sub, err, c.field)
		}
	}
}

func TestBackoffIsCappedExponentialWithJitter(t *testing.T) {
	m := &Manager{cfg: Config{InitialBackoff: time.Second, MaxBackoff: 10 * time.Second}}
	for attempt, full := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 10 * time.Second, 40: 10 * time.Second} {
		seen := map[time.Duration]bool{}
		for i := 0; i < 200; i++ {
			d := m.backoff(attempt)
			if d < full/2 || d > full {
				t.Fatalf("attempt %d: wait %s outside [%s, %s]", attempt, d, full/2, full)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("attempt %d: waits are not jittered: %v", attempt, seen)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	base := Config{Timeout: time.Second, InitialBackoff: time.Second, MaxBackoff: time.Minute, FailingAfter: time.Minute}
	ok := base
	ok.Subscriptions = map[string]SubscriptionConfig{"ci": {URL: "http://127.0.0.1:1/x", Secret: "env:HOOK_SECRET"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for want, mut := range map[string]func(*Config){
		"timeout":     func(c *Config) { c.Timeout = 0 },
		"max_backoff": func(c *Config) { c.MaxBackoff = time.Millisecond },
		"max_hold":    func(c *Config) { c.MaxHold = -time.Second },
		"subscriptions.ci.secret": func(c *Config) {
			c.Subscriptions = map[string]SubscriptionConfig{"ci": {URL: "http://x/", Secret: "plain-secret-value"}}
		},
		"subscriptions.ci.url": func(c *Config) { c.Subscriptions = map[string]SubscriptionConfig{"ci": {URL: "x", Secret: "env:A"}} },
		"subscriptions.BAD.id": func(c *Config) {
			c.Subscriptions = map[string]SubscriptionConfig{"BAD": {URL: "http://x/", Secret: "env:A"}}
		},
		"subscriptions.ci.types[0]": func(c *Config) {
			c.Subscriptions = map[string]SubscriptionConfig{"ci": {URL: "http://x/", Types: []string{"["}, Secret: "env:A"}}
		},
	} {
		c := base
		mut(&c)
		var fe *FieldError
		if err := c.Validate(); !errors.As(err, &fe) || fe.Field != want {
			t.Errorf("want an error on %s, got %v", want, err)
		}
	}
	r := Resolver{LookupEnv: func(k string) (string, bool) { return map[string]string{"SHORT": "abc"}[k], k == "SHORT" }}
	if _, err := r.Resolve("env:SHORT"); err == nil {
		t.Error("a secret shorter than 16 bytes was accepted")
	}
	if _, err := r.Resolve("env:MISSING"); err == nil {
		t.Error("a missing secret was accepted")
	}
}
