package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"artifactstore/backends"
	"artifactstore/backends/local"
	"artifactstore/backends/s3"
	"artifactstore/internal/cleanup"
	"artifactstore/internal/lifecycle"
	"artifactstore/internal/recovery"
	"artifactstore/internal/registry"
	"artifactstore/internal/replication"
	"artifactstore/internal/verify"
	"artifactstore/internal/webhook"
	"artifactstore/store"
	"artifactstore/web"
)

// backendFactory builds one backend from its typed config.
type backendFactory func(ctx context.Context, id string, cfg BackendConfig, log *slog.Logger) (backends.Backend, error)

// backendFactories is the explicit constructor table: one entry per type.
var backendFactories = map[string]backendFactory{
	"local": func(ctx context.Context, id string, cfg BackendConfig, log *slog.Logger) (backends.Backend, error) {
		return local.New(id, local.Config{Root: cfg.Path, KeyPrefix: cfg.KeyPrefix, Sync: cfg.Sync}, log)
	},
	"s3": func(ctx context.Context, id string, cfg BackendConfig, log *slog.Logger) (backends.Backend, error) {
		b, err := s3.New(id, cfg.S3, cfg.KeyPrefix, s3.Resolver{}, log)
		var fe *s3.FieldError
		if errors.As(err, &fe) {
			return nil, &ConfigError{Key: "backends." + id + "." + fe.Key, Msg: fe.Msg}
		}
		return b, err
	},
}

// buildBackends constructs every configured backend.
func buildBackends(ctx context.Context, cfg *Config, log *slog.Logger) (map[string]backends.Backend, error) {
	out := make(map[string]backends.Backend, len(cfg.Backends))
	ids := make([]string, 0, len(cfg.Backends))
	for id := range cfg.Backends {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		bc := cfg.Backends[id]
		f, ok := backendFactories[bc.Type]
		if !ok {
			return nil, &ConfigError{Key: "backends." + id + ".type", Msg: fmt.Sprintf("unknown type %q", bc.Type)}
		}
		b, err := f(ctx, id, bc, log)
		if err != nil {
			return nil, fmt.Errorf("backend %s: %w", id, err)
		}
		out[id] = b
	}
	return out, nil
}

// router implements registry.Router from the routing config.
type router struct {
	rules []RuleConfig
	def   registry.Route
}

func globMatch(pattern, v string) bool {
	if pattern == "" {
		return true
	}
	ok, _ := path.Match(pattern, v)
	return ok
}

// Route returns the backends of the first matching rule, else the default.
func (r router) Route(producer, retentionClass string) registry.Route {
	for _, rule := range r.rules {
		if globMatch(rule.Producer, producer) && globMatch(rule.RetentionClass, retentionClass) {
			return rule.route()
		}
	}
	return r.def
}

// Service is a wired artifactstore: database, backends, registry and API.
type Service struct {
	Config   *Config
	Log      *slog.Logger
	Store    *store.Store
	Backends map[string]backends.Backend
	Registry *registry.Registry
	API      *web.Server
	Verify   *verify.Engine
	// Lifecycle deletes packages, applies retention, collects garbage
	// and prunes events.
	Lifecycle *lifecycle.Manager
	// Webhooks delivers events to subscribed receivers.
	Webhooks *webhook.Manager
	// Recovery keeps the manifest records in the backends and writes
	// database snapshots into one.
	Recovery *recovery.Manager
	// Replication completes pending copies and repairs failed ones.
	Replication *replication.Manager
	// Metrics is this service's own Prometheus registry (no globals).
	Metrics *prometheus.Registry
}

// NewService opens the database and backends, drops upload sessions left
// by an earlier process, and builds the API.
func NewService(ctx context.Context, cfg *Config, log *slog.Logger) (*Service, error) {
	st, err := store.Open(cfg.Database.Path, store.Options{LockTimeout: cfg.Database.LockTimeout, Logger: log, BatchDelay: cfg.Database.BatchDelay})
	if err != nil {
		return nil, err
	}
	metrics := prometheus.NewRegistry()
	registerProcessMetrics(metrics)
	metrics.MustRegister(newRegistryCollector(st))
	bs, err := buildBackends(ctx, cfg, log)
	if err != nil {
		st.Close()
		return nil, err
	}
	bm := backends.NewMetrics(metrics)
	for id, b := range bs {
		bs[id] = backends.Instrument(b, bm)
	}
	reg := registry.New(st, bs, router{rules: cfg.Routing.Rules, def: cfg.Routing.defaultRoute()}, registry.Options{
		SessionTTL: cfg.Server.UploadSessionTTL,
		MaxFiles:   cfg.Server.MaxFilesPerPackage,
		Logger:     log,

		TrustVerifiedFor: cfg.Verify.TrustedReadWindow,
	})
	if err := reg.EnableDirectDownloads(cfg.directPolicies()); err != nil {
		st.Close()
		return nil, &ConfigError{Key: "backends", Msg: err.Error()}
	}
	// No client of an earlier process can finish its upload session: the
	// process that staged the bytes is gone. Drop them all, so a crash
	// between upload and commit leaves nothing behind.
	if _, err := reg.SweepSessions(ctx, true); err != nil {
		st.Close()
		return nil, fmt.Errorf("drop upload sessions of the previous run: %w", err)
	}
	hooks, err := webhook.New(st, webhook.Options{Config: cfg.Webhooks, Logger: log, Metrics: metrics})
	if err == nil {
		err = hooks.Sync(ctx)
	}
	if err != nil {
		st.Close()
		var fe *webhook.FieldError
		if errors.As(err, &fe) {
			return nil, &ConfigError{Key: "webhooks." + fe.Field, Msg: fe.Msg}
		}
		return nil, err
	}
	life := lifecycle.New(st, bs, reg, lifecycle.Options{
		Logger:      log,
		Metrics:     lifecycle.NewMetrics(metrics),
		Policies:    cfg.lifecyclePolicies(),
		OrphanGrace: cfg.GC.OrphanGrace,
		Events:      cfg.eventPolicy(),
		Step:        killAtStep(),
		// Event pruning keeps what a webhook subscription still needs.
		EventFloor: hooks.KeepFrom,
	})
	// Deep verification and replication copies share one byte budget.
	budget := verify.NewLimiter(cfg.Verify.BytesPerSecond)
	engine := verify.New(st, bs, verify.Options{
		Concurrency:    cfg.Verify.Concurrency,
		BytesPerSecond: cfg.Verify.BytesPerSecond,
		Limiter:        budget,
		Logger:         log,
		Metrics:        verify.NewMetrics(metrics),
	})
	if err := engine.RestoreMetrics(ctx); err != nil {
		st.Close()
		return nil, err
	}
	// Copies of a killed process hold leases nobody will release.
	if n, err := st.DropLeasesOf(ctx, registry.LeasePrefix); err != nil {
		st.Close()
		return nil, fmt.Errorf("drop copy leases of the previous run: %w", err)
	} else if n > 0 {
		log.Info("copy leases of the previous run dropped", "count", n)
	}
	repl := replication.New(reg, replication.Options{
		Logger:        log,
		Limiter:       budget,
		RetryInterval: cfg.Replication.RetryInterval,
		Metrics: replication.NewMetrics(metrics, func() (int, error) {
			return replication.UnderReplicated(context.Background(), st) // a scrape has no context
		}),
	})
	api := web.New(reg, web.Options{
		MaxBodyBytes:         cfg.Server.MaxBodyBytes,
		MaxManifestBytes:     cfg.Server.MaxManifestBytes,
		SpoolDir:             filepath.Join(cfg.DataDir, "spool"),
		Logger:               log,
		Metrics:              metrics,
		Auth:                 st,
		AnonymousRead:        cfg.Auth.AnonymousRead,
		MaxConcurrentUploads: cfg.Server.MaxConcurrentUploads,
		BodyReadTimeout:      cfg.Server.BodyReadTimeout,
		MinBodyRate:          cfg.Server.MinBodyRate,
		BodyRateWindow:       cfg.Server.BodyRateWindow,
		FormMemoryBytes:      cfg.Server.FormMemoryBytes,
		MaxFiles:             cfg.Server.MaxFilesPerPackage,
		Deleter:              life,
		ProducerDelete:       cfg.Auth.ProducerDelete,
		Events:               st,
		Direct:               reg,
		Ready: func(ctx context.Context) error {
			_, err := st.Events(ctx, 0, 1)
			return err
		},
	})
	rec := recovery.New(st, bs, recovery.Options{Logger: log, Step: recoveryKillAt(), Metrics: recovery.NewMetrics(metrics)})
	metrics.MustRegister(newRecoveryCollector(rec))
	svc := &Service{Config: cfg, Log: log, Store: st, Backends: bs, Registry: reg, API: api, Verify: engine, Metrics: metrics, Lifecycle: life, Webhooks: hooks, Recovery: rec, Replication: repl}
	api.Handle("GET /v1/health", store.ScopeRead, http.HandlerFunc(svc.healthDoc))
	api.Handle("GET /metrics", web.ScopeOpen, metricsHandler(metrics))
	// The admin endpoints are on the public API too, for an admin token;
	// the admin socket serves them without one (its file mode guards it).
	for pattern, h := range svc.adminRoutes() {
		api.Handle(pattern, store.ScopeAdmin, h)
	}
	if err := svc.mountUI(); err != nil {
		st.Close()
		return nil, fmt.Errorf("web interface: %w", err)
	}
	return svc, nil
}

// Close closes the database.
func (s *Service) Close() error { return s.Store.Close() }

// Serve serves the API on ln until ctx is done, then shuts down gracefully:
// it stops accepting, lets in-flight requests finish within the shutdown
// timeout and then cancels the rest (unfinished uploads are aborted and
// leave nothing behind).
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	baseCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	srv := &http.Server{
		Handler:           s.API,
		ReadHeaderTimeout: s.Config.Server.ReadHeaderTimeout,
		IdleTimeout:       s.Config.Server.IdleTimeout,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(s.Log.Handler(), slog.LevelWarn),
	}
	// Live event streams never finish on their own; end them at shutdown.
	srv.RegisterOnShutdown(s.API.StopStreams)
	// Open every listener before starting anything, so a failure here
	// leaves nothing running.
	adminLn, err := listenAdmin(s.Config.AdminSocket())
	if err != nil {
		ln.Close()
		return err
	}
	defer os.Remove(s.Config.AdminSocket())
	var lln net.Listener
	if addr := s.Config.Server.LocalListen; addr != "" {
		if lln, err = net.Listen("tcp", addr); err != nil {
			adminLn.Close()
			ln.Close()
			return fmt.Errorf("listen on %s (server.local_listen): %w", addr, err)
		}
	}
	adminSrv := &http.Server{Handler: s.AdminHandler(), BaseContext: srv.BaseContext, ErrorLog: srv.ErrorLog, ReadHeaderTimeout: srv.ReadHeaderTimeout}
	go adminSrv.Serve(adminLn)
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		s.sweepLoop(baseCtx)
	}()
	// Leftovers of an earlier process (spool files, incomplete writes)
	// go now and, should any appear later, every cleanup.interval.
	cleanupDone := make(chan struct{})
	go func() {
		defer close(cleanupDone)
		cleanup.New(cleanup.Options{
			Interval:           s.Config.Cleanup.Interval,
			IncompleteWriteAge: s.Config.Cleanup.IncompleteWriteAge,
			Spool:              s.API.SweepSpool,
			Backends:           s.Backends,
			Logger:             s.Log,
		}).Loop(baseCtx)
	}()
	verifyDone := make(chan struct{})
	go func() {
		defer close(verifyDone)
		s.Verify.RunScheduled(baseCtx, []verify.Schedule{
			{Mode: store.ModeDeep, Interval: s.Config.Verify.Deep.Interval, Jitter: s.Config.Verify.Deep.Jitter},
			{Mode: store.ModeQuick, Interval: s.Config.Verify.Quick.Interval, Jitter: s.Config.Verify.Quick.Jitter},
		})
	}()
	lifecycleDone := make(chan struct{})
	go func() {
		defer close(lifecycleDone)
		s.Lifecycle.RunScheduled(baseCtx, lifecycle.Schedule{
			Retention: s.Config.Retention.Interval, GC: s.Config.GC.Interval, Events: s.Config.Events.PruneInterval,
		})
	}()
	replicationDone := make(chan struct{})
	go func() {
		defer close(replicationDone)
		s.Replication.Run(baseCtx)
	}()
	webhooksDone := make(chan struct{})
	go func() {
		defer close(webhooksDone)
		s.Webhooks.Run(baseCtx)
	}()
	recordsDone := make(chan struct{})
	go func() {
		defer close(recordsDone)
		s.runRecovery(baseCtx)
	}()
	snapshotsDone := make(chan struct{})
	go func() {
		defer close(snapshotsDone)
		s.runSnapshots(baseCtx)
	}()
	errc := make(chan error, 1)
	go func() {
		if s.Config.Server.TLSCertFile != "" {
			errc <- srv.ServeTLS(ln, s.Config.Server.TLSCertFile, s.Config.Server.TLSKeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	var localSrv *http.Server
	if lln != nil {
		localSrv = &http.Server{Handler: s.API, ReadHeaderTimeout: srv.ReadHeaderTimeout, IdleTimeout: srv.IdleTimeout,
			BaseContext: srv.BaseContext, ErrorLog: srv.ErrorLog}
		go localSrv.Serve(lln)
		s.Log.Info("serving plain HTTP on loopback", "addr", lln.Addr().String())
	}
	s.Log.Info("serving", "addr", ln.Addr().String(), "admin_socket", s.Config.AdminSocket(), "backends", s.Registry.BackendIDs(), "database", s.Store.Path())
	if err := sdNotify("READY=1"); err != nil {
		s.Log.Warn("systemd readiness notification failed", "err", err)
	}
	// Whether ctx ends or the API server fails (a bad certificate, a
	// closed listener), everything started above is stopped before Serve
	// returns.
	var serveErr error
	select {
	case serveErr = <-errc:
		s.Log.Error("API server failed; shutting down", "err", serveErr)
		ln.Close() // ServeTLS returns without closing it when the certificate is bad
	case <-ctx.Done():
	}
	s.Log.Info("shutting down", "timeout", s.Config.Server.ShutdownTimeout.String())
	sdNotify("STOPPING=1")
	sctx, cancel := context.WithTimeout(baseCtx, s.Config.Server.ShutdownTimeout)
	defer cancel()
	adminLn.Close()
	err = srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.Log.Warn("shutdown timeout reached; cancelling unfinished requests")
		cancelRequests()
		srv.Close()
		err = nil
	}
	adminSrv.Shutdown(sctx)
	adminSrv.Close()
	if localSrv != nil {
		localSrv.Shutdown(sctx)
		localSrv.Close()
	}
	// Stop the scheduler and the sweeper; an interrupted verification run
	// resumes at the next start.
	cancelRequests()
	<-verifyDone
	<-sweepDone
	<-cleanupDone
	<-lifecycleDone
	<-replicationDone
	<-webhooksDone // delivery positions are saved
	<-recordsDone  // records of the last commits are written (or left in the outbox)
	<-snapshotsDone
	// Sessions of cancelled uploads are dropped with their staged data.
	if _, serr := s.Registry.SweepSessions(context.WithoutCancel(ctx), true); serr != nil {
		s.Log.Warn("dropping open upload sessions at shutdown failed", "err", serr)
	}
	if serveErr != nil {
		return serveErr
	}
	return err
}

func (s *Service) sweepLoop(ctx context.Context) {
	period := s.Config.Server.UploadSessionTTL / 4
	if period < time.Second {
		period = time.Second
	}
	if period > time.Minute {
		period = time.Minute
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Registry.SweepSessions(ctx, false); err != nil && ctx.Err() == nil {
				s.Log.Warn("expiring upload sessions failed", "err", err)
			}
		}
	}
}
