package app

import (
	"testing"

	"artifactstore/backends/local"
)

// A local backend shares file-system flushes unless told otherwise; a
// backend of the config file without the key gets the same default.
func TestLocalSyncDefaultsToFileSystemAndAcceptsFile(t *testing.T) {
	def, err := LoadConfig(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := def.Backends["local"].Sync; got != local.SyncFileSystem {
		t.Fatalf("default sync %q, want %q", got, local.SyncFileSystem)
	}
	cfg, err := LoadConfig(LoadOptions{File: writeCfg(t, twoLocal+"    sync: file\nrouting:\n  default: x\n")})
	if err != nil {
		t.Fatal(err)
	}
	if x, y := cfg.Backends["x"].Sync, cfg.Backends["y"].Sync; x != local.SyncFileSystem || y != local.SyncFile {
		t.Fatalf("sync of x %q (no key), y %q (file)", x, y)
	}
}
