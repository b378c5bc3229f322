package app

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"artifactstore/internal/lifecycle"
)

// validateLifecycle checks the retention, gc and events keys.
func (c *Config) validateLifecycle() error {
	nonNeg := []struct {
		key string
		v   time.Duration
	}{
		{"retention.interval", c.Retention.Interval},
		{"gc.interval", c.GC.Interval},
		{"events.prune_interval", c.Events.PruneInterval},
	}
	for _, d := range nonNeg {
		if d.v < 0 {
			return &ConfigError{Key: d.key, Msg: "must not be negative (0 disables the schedule)"}
		}
		if d.v > 0 && d.v < time.Second {
			return &ConfigError{Key: d.key, Msg: "must be at least 1s"}
		}
	}
	positive := []struct {
		key string
		v   time.Duration
	}{
		{"gc.orphan_grace", c.GC.OrphanGrace},
		{"events.max_age", c.Events.MaxAge},
		{"events.verification_max_age", c.Events.VerificationMaxAge},
		{"events.summary_max_age", c.Events.SummaryMaxAge},
	}
	for _, d := range positive {
		if d.v <= 0 {
			return &ConfigError{Key: d.key, Msg: "must be greater than zero"}
		}
	}
	classes := make([]string, 0, len(c.Retention.Classes))
	for class := range c.Retention.Classes {
		classes = append(classes, class)
	}
	sort.Strings(classes)
	for _, class := range classes {
		p := c.Retention.Classes[class]
		key := "retention.classes." + class
		if p.KeepLast < 0 {
			return &ConfigError{Key: key + ".keep_last", Msg: "must not be negative (0: no limit)"}
		}
		if p.MaxAge < 0 {
			return &ConfigError{Key: key + ".max_age", Msg: "must not be negative (0: no limit)"}
		}
		if k, _, _ := strings.Cut(p.KeepLabel, "="); p.KeepLabel != "" && k == "" {
			return &ConfigError{Key: key + ".keep_label", Msg: fmt.Sprintf("%q needs a label key: key=value or key", p.KeepLabel)}
		}
		if p.NeverDelete && (p.KeepLast > 0 || p.MaxAge > 0) {
			return &ConfigError{Key: key + ".never_delete", Msg: "never_delete cannot go with keep_last or max_age"}
		}
		if !p.NeverDelete && p.KeepLast == 0 && p.MaxAge == 0 {
			return &ConfigError{Key: key, Msg: "a policy needs keep_last, max_age or never_delete"}
		}
	}
	return nil
}

// lifecyclePolicies turns the config into lifecycle policies.
func (c *Config) lifecyclePolicies() map[string]lifecycle.Policy {
	out := make(map[string]lifecycle.Policy, len(c.Retention.Classes))
	for class, p := range c.Retention.Classes {
		out[class] = lifecycle.Policy{KeepLast: p.KeepLast, MaxAge: p.MaxAge, KeepLabel: p.KeepLabel, NeverDelete: p.NeverDelete}
	}
	return out
}

func (c *Config) eventPolicy() lifecycle.EventPolicy {
	return lifecycle.EventPolicy{MaxAge: c.Events.MaxAge, VerificationMaxAge: c.Events.VerificationMaxAge, SummaryMaxAge: c.Events.SummaryMaxAge}
}

// killAtEnv is a fault-injection hook for the crash tests: when set to N
// the process kills itself with SIGKILL at the Nth state-changing step of
// a gc or retention run (see lifecycle.Options.Step), as kill -9 would.
const killAtEnv = "ARTIFACTSTORE_TEST_KILL_AT"

func killAtStep() func(string) {
	n, err := strconv.ParseInt(os.Getenv(killAtEnv), 10, 64)
	if err != nil || n <= 0 {
		return nil
	}
	var steps atomic.Int64
	return func(string) {
		if steps.Add(1) == n {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}
