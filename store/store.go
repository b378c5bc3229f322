// Package store keeps the registry's metadata in an embedded bbolt database:
// packages, blobs, storage locations, events and open upload sessions.
//
// The store never touches blob bytes and knows nothing of storage backends
// beyond their ids.
package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Errors callers match with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrConflict     = errors.New("conflict")
	ErrLocked       = errors.New("database is locked by another process")
	ErrSchemaTooNew = errors.New("database schema is newer than this binary")
	ErrCorrupt      = errors.New("corrupt record")
)

// encodingV1 is the first byte of every JSON value written by this binary.
const encodingV1 byte = 1

// Options configures Open.
type Options struct {
	// LockTimeout bounds the wait for bbolt's exclusive file lock.
	LockTimeout time.Duration
	// NoSync skips fsync on commit (tests and benchmarks only).
	NoSync bool
	// ReadOnly opens with a shared lock and never writes.
	ReadOnly bool
	// Logger receives migration and maintenance messages.
	Logger *slog.Logger
	// Now overrides the clock (tests).
	Now func() time.Time
	// EventSource is the CloudEvents "source" of every event.
	EventSource string
	// BatchDelay is how long the group committer, idle when a hot-path
	// write arrives, waits for more writes to share that commit's fsync.
	// 0 commits at once; writes that arrive while a commit is running
	// always share the next one.
	BatchDelay time.Duration
}

// Store is the registry database. Safe for concurrent use.
type Store struct {
	db     *bolt.DB
	path   string
	log    *slog.Logger
	now    func() time.Time
	source string
	// sessions caches decoded upload sessions (immutable once written) and
	// tokens caches decoded token records; this process is the only
	// writer, and it evicts entries when it deletes them.
	sessions sync.Map // id -> *Session
	tokens   sync.Map // id -> Token
	// tokenGen counts revocations (under tokenMu), so a token read from
	// the database before a revoke is not cached after it.
	tokenMu  sync.Mutex
	tokenGen uint64
	// testHookTokenRead runs between an uncached token read and caching it.
	testHookTokenRead func()
	// events wakes readers of the event log after each commit (events.go).
	events eventSignal
	// group commits hot-path writes together (nil when read-only).
	group *groupCommitter
}

// Open opens or creates the database at path and brings its schema up to
// date. A database held by another process fails after LockTimeout with an
// error wrapping ErrLocked that names the file.
func Open(path string, opts Options) (*Store, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.EventSource == "" {
		opts.EventSource = "/artifactstore"
	}
	if !opts.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      opts.LockTimeout,
		NoSync:       opts.NoSync,
		ReadOnly:     opts.ReadOnly,
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open database %s: %w (waited %s for the bbolt file lock on %s; is another artifactstore process running?)",
				path, ErrLocked, opts.LockTimeout, path)
		}
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	s := &Store{db: db, path: path, log: opts.Logger, now: opts.Now, source: opts.EventSource}
	if opts.ReadOnly {
		err = s.checkSchemaReadOnly()
	} else {
		err = s.migrate()
	}
	if err != nil {
		db.Close()
		return nil, err
	}
	if !opts.ReadOnly {
		s.group = newGroupCommitter(db, max(opts.BatchDelay, 0))
	}
	return s, nil
}

// batch runs a hot-path write as a group commit (groupcommit.go), so
// concurrent publishes share one fsync; it returns once the write is
// durable. fn may run more than once (when another function of the same
// group fails), so it must set its results afresh on every call.
func (s *Store) batch(fn func(tx *bolt.Tx) error) error {
	if s.group == nil { // read-only
		return s.db.Update(fn)
	}
	return s.group.do(fn)
}

// batchEarly is batch for a write nobody needs durable before going on
// (groupCommitter.doEarly): it returns once fn has run in its group's
// transaction, and failed is called if that transaction then fails to
// commit. Reads that must see such writes call settle first.
func (s *Store) batchEarly(fn func(tx *bolt.Tx) error, failed func(error)) error {
	if s.group == nil { // read-only
		return s.db.Update(fn)
	}
	return s.group.doEarly(fn, failed)
}

// settle waits until every write batchEarly has returned so far is
// committed, so a read transaction started afterwards sees it. Write
// transactions see such writes without it.
func (s *Store) settle() {
	if s.group != nil {
		s.group.settle()
	}
}

// Close closes the database, flushing everything committed.
func (s *Store) Close() error {
	if s.group != nil {
		s.group.close()
	}
	return s.db.Close()
}

// Path returns the database file path.
func (s *Store) Path() string { return s.path }

// DB exposes the bbolt handle for backup and consistency checks.
func (s *Store) DB() *bolt.DB { return s.db }

// migration upgrades the schema by one version. It runs in its own
// transaction, which also records the new version.
type migration struct {
	name string
	up   func(tx *bolt.Tx) error
}

// migrations are applied in order; index i upgrades version i to i+1.
// Never edit or reorder a released migration: append a new one.
var migrations = []migration{
	{name: "create buckets", up: func(tx *bolt.Tx) error {
		for _, b := range v1Buckets() {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	}},
	{name: "add verification state", up: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketVerifyState)
		return err
	}},
	{name: "add access tokens", up: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketTokens)
		return err
	}},
	{name: "add lifecycle (package refs, gc intents, orphans)", up: migrateLifecycle},
	{name: "add webhook subscriptions", up: func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketWebhooks)
		return err
	}},
	{name: "add packages by commit order", up: migrateRecent},
	{name: "add location counters and the failed-location index", up: func(tx *bolt.Tx) error {
		return rebuildLocationDerived(noCancel{}, tx)
	}},
	{name: "add listing indexes by producer, retention class and label", up: func(tx *bolt.Tx) error {
		return rebuildPackageIndexes(noCancel{}, tx)
	}},
	{name: "add the manifest record outbox", up: migrateRecordOutbox},
	// Nothing to rewrite: values written before keep their copies of the
	// key's fields and read the same (compact.go); the version keeps older
	// binaries, which would read a new value without them, away.
	{name: "blob and location values without the fields their key holds", up: func(tx *bolt.Tx) error { return nil }},
	{name: "add pending copies and storage migrations", up: func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPendingCopies, bucketMigrations} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}},
	// Nothing to rewrite, as for blob and location values: events written
	// before keep every field and read the same (eventvalue.go).
	{name: "event values without their constant fields", up: func(tx *bolt.Tx) error { return nil }},
	// Nothing to rewrite: values written before (JSON, encodingV1) read
	// the same (eventvalue.go, compact.go); the version keeps older
	// binaries, which cannot read the binary form, away.
	{name: "events, blob and location values in a binary form", up: func(tx *bolt.Tx) error { return nil }},
	// Nothing to rewrite, as above (packagevalue.go).
	{name: "package values in a binary form", up: func(tx *bolt.Tx) error { return nil }},
	// Nothing to rewrite: location values written before have no
	// last_failed_at and read the same (compact.go); the version keeps
	// older binaries, which would ignore its flag and misread the time
	// behind it as the rest of the value, away.
	{name: "location values with the time of the last failure", up: func(tx *bolt.Tx) error { return nil }},
}

// SchemaVersion is the schema version this binary writes.
func SchemaVersion() uint64 { return uint64(len(migrations)) }

func readVersion(tx *bolt.Tx) uint64 {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0
	}
	v := meta.Get(keySchemaVersion)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (s *Store) migrate() error {
	var current uint64
	if err := s.db.View(func(tx *bolt.Tx) error { current = readVersion(tx); return nil }); err != nil {
		return err
	}
	if current > SchemaVersion() {
		return fmt.Errorf("open database %s: %w: schema version %d, this binary knows up to %d; upgrade the binary",
			s.path, ErrSchemaTooNew, current, SchemaVersion())
	}
	for v := current; v < SchemaVersion(); v++ {
		m := migrations[v]
		err := s.db.Update(func(tx *bolt.Tx) error {
			if err := m.up(tx); err != nil {
				return err
			}
			meta, err := tx.CreateBucketIfNotExists(bucketMeta)
			if err != nil {
				return err
			}
			return meta.Put(keySchemaVersion, u64(v+1))
		})
		if err != nil {
			return fmt.Errorf("migrate database %s to schema %d (%s): %w", s.path, v+1, m.name, err)
		}
		s.log.Info("database migrated", "path", s.path, "schema_version", v+1, "migration", m.name)
	}
	return nil
}

func (s *Store) checkSchemaReadOnly() error {
	return s.db.View(func(tx *bolt.Tx) error {
		v := readVersion(tx)
		if v > SchemaVersion() {
			return fmt.Errorf("open database %s: %w: schema version %d, this binary knows up to %d", s.path, ErrSchemaTooNew, v, SchemaVersion())
		}
		if v < SchemaVersion() {
			return fmt.Errorf("open database %s read-only: schema version %d needs migrating to %d; open it read-write once", s.path, v, SchemaVersion())
		}
		return nil
	})
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append([]byte{encodingV1}, b...), nil
}

// decode copies nothing: json.Unmarshal copies what it keeps, so it is safe
// on bytes that are only valid inside the transaction.
func decode(b []byte, v any) error {
	if len(b) == 0 || b[0] != encodingV1 {
		return fmt.Errorf("%w: unknown value encoding", ErrCorrupt)
	}
	if err := json.Unmarshal(b[1:], v); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return nil
}

func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

func joinKey(parts ...string) []byte {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	k := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			k = append(k, 0)
		}
		k = append(k, p...)
	}
	return k
}

// FileSize returns the bytes of the pages the database has allocated (its
// high-water mark, tx.Size()). The file on disk is larger by what bbolt
// grew it ahead of use (up to 16 MiB); Space has both.
func (s *Store) FileSize() (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error { n = tx.Size(); return nil })
	return n, err
}
