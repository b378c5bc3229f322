package store

// Every bbolt bucket the registry uses. All are created by migration 1.
//
// Keys sort the way they are scanned; separators are NUL because no name,
// version, path or backend id may contain it.
var (
	// bucketMeta holds keySchemaVersion.
	bucketMeta = []byte("meta")
	// bucketPackages: name \x00 version -> packageRecord.
	bucketPackages = []byte("packages")
	// bucketVersions: name \x00 seq(8, big-endian) -> version. Scanned
	// backwards to list a name's versions newest first.
	bucketVersions = []byte("package_versions")
	// bucketBlobs: digest ("sha256:hex") -> blobRecord.
	bucketBlobs = []byte("blobs")
	// bucketLocations: digest \x00 backend id -> locationRecord.
	bucketLocations = []byte("storage_locations")
	// bucketEvents: seq(8, big-endian) -> Event.
	bucketEvents = []byte("events")
	// bucketUploads: upload session id -> sessionRecord.
	bucketUploads = []byte("upload_sessions")
	// bucketUploadRefs: backend id \x00 digest \x00 session id -> empty.
	// An object an open session has staged (or is staging) in a backend;
	// garbage collection never deletes an object with a ref or a location.
	bucketUploadRefs = []byte("upload_refs")
	// bucketVerifyState: backend id \x00 mode -> VerifyState. Added by
	// migration 2.
	bucketVerifyState = []byte("verify_state")
	// bucketTokens: token id -> Token (only a hash of the secret). Added
	// by migration 3.
	bucketTokens = []byte("tokens")
	// bucketLocationCounts: backend id \x00 status -> count(8) bytes(8),
	// big-endian: the locations of each backend by status and their bytes,
	// kept by putLocation/deleteLocation. Added by migration 7.
	bucketLocationCounts = []byte("location_counts")
	// bucketFailedLocations: digest \x00 backend id -> empty, for every
	// location whose status is a failed verdict. Added by migration 7.
	bucketFailedLocations = []byte("failed_locations")
	// Listing indexes, kept by putPackage/deletePackage; each key ends in
	// the package key name \x00 version, the value is the package's seq
	// (8, big-endian; empty in entries written before it was kept there,
	// which readers resolve through the package). Added by migration 8.
	// bucketByProducer: producer \x00 name \x00 version.
	bucketByProducer = []byte("packages_by_producer")
	// bucketByRetention: retention class \x00 name \x00 version.
	bucketByRetention = []byte("packages_by_retention_class")
	// bucketByLabel: label key \x00 label value \x00 name \x00 version.
	bucketByLabel = []byte("packages_by_label")
	// bucketPackageRefs: digest \x00 name \x00 version -> empty. Which
	// committed packages reference a content; written and removed in the
	// same transaction as the package. Garbage collection deletes a
	// content's locations only when it has no entry here. Added by
	// migration 4, which builds it from the packages.
	bucketPackageRefs = []byte("package_refs")
	// bucketGCIntents: backend id \x00 digest -> GCIntent. An object whose
	// location garbage collection removed and whose backend delete is not
	// confirmed yet; a crash leaves it here and the next run finishes it.
	// Added by migration 4.
	bucketGCIntents = []byte("gc_intents")
	// bucketOrphans: backend id \x00 digest -> OrphanRecord (when gc first
	// saw an object the registry does not know). Added by migration 4.
	bucketOrphans = []byte("gc_orphans")
	// bucketLifecycle: "gc" | "retention" | "events" -> the last run's
	// summary; "events_horizon" -> seq(8) of the oldest event that pruning
	// kept. Added by migration 4.
	bucketLifecycle = []byte("lifecycle")
	// bucketWebhooks: subscription id -> Subscription (target, filters,
	// secret and the delivery cursor). Added by migration 5.
	bucketWebhooks = []byte("webhook_subscriptions")
	// bucketRecent: seq(8, big-endian) -> name \x00 version \x00
	// producer \x00 retention class \x00 labels JSON: the commit order of
	// every package with what listings filter on. Scanned backwards to
	// list packages newest first (the web UI). Added by migration 6.
	bucketRecent = []byte("packages_by_seq")
	// bucketRecordOutbox: name \x00 version -> generation(8) flags(1). A
	// package whose manifest records in the backends must follow a commit
	// or delete; written in that transaction, removed once the records
	// are written (outbox.go). Added by migration 9.
	bucketRecordOutbox = []byte("record_outbox")
	// bucketPendingCopies: digest \x00 backend id -> PendingCopy: a copy
	// a routing rule asks for that the publish did not write (min_copies),
	// written later by internal/replication. Added by migration 11.
	bucketPendingCopies = []byte("pending_copies")
	// bucketMigrations: migration id -> the state of a storage migration
	// between backends (its selection, cursor and counts), so a restarted
	// service resumes it. Added by migration 11.
	bucketMigrations = []byte("storage_migrations")
)

var keySchemaVersion = []byte("schema_version")

// allBuckets lists every bucket of the current schema.
func allBuckets() [][]byte {
	return append(v1Buckets(), bucketVerifyState, bucketTokens,
		bucketPackageRefs, bucketGCIntents, bucketOrphans, bucketLifecycle, bucketWebhooks, bucketRecent,
		bucketLocationCounts, bucketFailedLocations,
		bucketByProducer, bucketByRetention, bucketByLabel,
		bucketRecordOutbox,
		bucketPendingCopies, bucketMigrations)
}

// v1Buckets are the buckets migration 1 created; never change this list.
func v1Buckets() [][]byte {
	return [][]byte{bucketMeta, bucketPackages, bucketVersions, bucketBlobs,
		bucketLocations, bucketEvents, bucketUploads, bucketUploadRefs}
}
