package app

import (
	"sort"
	"strings"

	"artifactstore/backends/s3"
)

// credentialRef is one credential reference of the config.
type credentialRef struct {
	key string // backends.rgw.secret_key_ref
	ref string // env:NAME or file:/path
}

// resolveCredentials reads every credential reference the config names,
// the way serve will (environment variables from env, files from disk),
// and keeps no value. The first that does not resolve is a ConfigError
// naming its key.
func resolveCredentials(cfg *Config, env Env) ([]credentialRef, error) {
	res := s3.Resolver{LookupEnv: func(name string) (string, bool) {
		for _, kv := range env.Environ {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				return v, true
			}
		}
		return "", false
	}}
	ids := make([]string, 0, len(cfg.Backends))
	for id := range cfg.Backends {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var refs []credentialRef
	for _, id := range ids {
		b := cfg.Backends[id]
		if b.Type != "s3" {
			continue
		}
		for _, r := range []credentialRef{
			{"backends." + id + ".access_key_ref", b.S3.AccessKeyRef},
			{"backends." + id + ".secret_key_ref", b.S3.SecretKeyRef},
		} {
			if _, err := res.Resolve(r.ref); err != nil {
				return nil, &ConfigError{Key: r.key, Msg: err.Error()}
			}
			refs = append(refs, r)
		}
	}
	return refs, nil
}
