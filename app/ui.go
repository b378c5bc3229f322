package app

import (
	"context"
	"encoding/json"
	"net/http"

	"artifactstore/web"
	"artifactstore/web/ui"
)

// mountUI serves the web interface under /ui/ on the API, with / redirecting
// to it. The interface does its own session checks, so its routes are open
// on the API's side.
func (s *Service) mountUI() error {
	u, err := ui.New(ui.Options{
		Catalog:       s.Store,
		Packages:      s.Registry,
		Tokens:        s.Store,
		Health:        s.healthJSON,
		API:           s.API,
		AnonymousRead: s.Config.Auth.AnonymousRead,
		Logger:        s.Log,
	})
	if err != nil {
		return err
	}
	s.API.Handle(ui.Prefix, web.ScopeOpen, u)
	s.API.Handle("GET /{$}", web.ScopeOpen, http.HandlerFunc(ui.RedirectRoot))
	return nil
}

// healthJSON is the health document as GET /v1/health answers it.
func (s *Service) healthJSON(ctx context.Context) ([]byte, error) {
	doc, err := s.health(ctx)
	if err != nil {
		return nil, err
	}
	return json.Marshal(doc)
}
