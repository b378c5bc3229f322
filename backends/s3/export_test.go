package s3

import (
	"log/slog"
	"net/http"
)

// NewWithTransport is New with the HTTP transport wrapped by wrap.
func NewWithTransport(id string, cfg Config, keyPrefix string, log *slog.Logger, wrap func(http.RoundTripper) http.RoundTripper) (*Backend, error) {
	return newBackend(id, cfg, keyPrefix, Resolver{}, log, wrap)
}
