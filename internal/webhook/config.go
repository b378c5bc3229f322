package webhook

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"artifactstore/store"
)

// Config is the `webhooks` section of the service configuration.
type Config struct {
	// Timeout bounds one delivery attempt (connect, send, answer).
	Timeout time.Duration `koanf:"timeout" yaml:"timeout"`
	// InitialBackoff is the wait after the first failed attempt; each
	// further failure doubles it up to MaxBackoff (each wait is drawn
	// between half and all of that value).
	InitialBackoff time.Duration `koanf:"initial_backoff" yaml:"initial_backoff"`
	MaxBackoff     time.Duration `koanf:"max_backoff" yaml:"max_backoff"`
	// FailingAfter is how long a subscription may keep failing before it
	// is reported as failing (metric, /v1/health, a log line).
	FailingAfter time.Duration `koanf:"failing_after" yaml:"failing_after"`
	// MaxHold is how long a subscription's oldest undelivered event holds
	// back event pruning; past it, pruning may remove the events and the
	// subscription records them as lost. 0 holds them forever.
	MaxHold time.Duration `koanf:"max_hold" yaml:"max_hold"`
	// Subscriptions defined here are created, updated and removed at start.
	Subscriptions map[string]SubscriptionConfig `koanf:"subscriptions" yaml:"subscriptions"`
}

// SubscriptionConfig is one subscription in the config file.
type SubscriptionConfig struct {
	URL            string   `koanf:"url" yaml:"url"`
	Types          []string `koanf:"types" yaml:"types"`
	Producer       string   `koanf:"producer" yaml:"producer"`
	RetentionClass string   `koanf:"retention_class" yaml:"retention_class"`
	// Secret is a reference, never the value: env:NAME or file:/path.
	Secret string `koanf:"secret" yaml:"secret"`
}

// Validate checks the section; errors are *FieldError with the key below
// `webhooks.` (secret references are resolved by Subscriptions).
func (c *Config) Validate() error {
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"timeout", c.Timeout}, {"initial_backoff", c.InitialBackoff}, {"max_backoff", c.MaxBackoff}, {"failing_after", c.FailingAfter}} {
		if d.v <= 0 {
			return &FieldError{d.key, "must be greater than zero"}
		}
	}
	if c.MaxBackoff < c.InitialBackoff {
		return &FieldError{"max_backoff", "must not be less than initial_backoff"}
	}
	if c.MaxHold < 0 {
		return &FieldError{"max_hold", "must not be negative (0 holds events forever)"}
	}
	for _, id := range c.ids() {
		sc := c.Subscriptions[id]
		sub := store.Subscription{ID: id, URL: sc.URL, Types: sc.Types, Producer: sc.Producer, RetentionClass: sc.RetentionClass}
		if err := Validate(&sub); err != nil {
			fe := err.(*FieldError)
			return &FieldError{"subscriptions." + id + "." + fe.Field, fe.Msg}
		}
		if err := checkRef(sc.Secret); err != nil {
			return &FieldError{"subscriptions." + id + ".secret", err.Error()}
		}
	}
	return nil
}

func (c *Config) ids() []string {
	ids := make([]string, 0, len(c.Subscriptions))
	for id := range c.Subscriptions {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func checkRef(ref string) error {
	kind, rest, ok := strings.Cut(ref, ":")
	if !ok || (kind != "env" && kind != "file") || rest == "" {
		return fmt.Errorf("must be a reference env:NAME or file:/path, not the secret itself")
	}
	return nil
}

// Resolver reads secret references; nil functions mean the process's.
type Resolver struct {
	LookupEnv func(string) (string, bool)
	ReadFile  func(string) ([]byte, error)
}

// Resolve returns the secret ref names. Errors name the reference, never
// the value.
func (r Resolver) Resolve(ref string) (string, error) {
	if err := checkRef(ref); err != nil {
		return "", err
	}
	kind, rest, _ := strings.Cut(ref, ":")
	var v string
	if kind == "env" {
		look := r.LookupEnv
		if look == nil {
			look = os.LookupEnv
		}
		v, _ = look(rest)
	} else {
		read := r.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		b, err := read(rest)
		if err != nil {
			return "", fmt.Errorf("secret %s: cannot read the file", ref)
		}
		v = strings.TrimRight(string(b), "\r\n")
	}
	if len(v) < minSecret {
		return "", fmt.Errorf("secret %s: is empty or shorter than %d bytes", ref, minSecret)
	}
	return v, nil
}

// minSecret is the shortest accepted secret.
const minSecret = 16

// Subscriptions resolves the config's subscriptions into records.
func (c *Config) subscriptions(r Resolver) ([]store.Subscription, error) {
	var out []store.Subscription
	for _, id := range c.ids() {
		sc := c.Subscriptions[id]
		secret, err := r.Resolve(sc.Secret)
		if err != nil {
			return nil, &FieldError{"subscriptions." + id + ".secret", err.Error()}
		}
		out = append(out, store.Subscription{ID: id, URL: sc.URL, Types: sc.Types, Producer: sc.Producer,
			RetentionClass: sc.RetentionClass, Secret: secret, FromConfig: true})
	}
	return out, nil
}
