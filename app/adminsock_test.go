package app

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
)

// TestAdminSocketLeavesUmaskAlone (finding 8): the admin socket is 0600
// without swapping the process umask, which other goroutines share: files
// they create meanwhile keep the modes the umask gives them.
func TestAdminSocketLeavesUmaskAlone(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	dir := t.TempDir()
	var stop atomic.Bool
	wrong := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			p := filepath.Join(dir, fmt.Sprintf("f%d", i%64))
			os.Remove(p)
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o666)
			if err != nil {
				continue
			}
			fi, _ := f.Stat()
			f.Close()
			if fi != nil && fi.Mode().Perm() != 0o644 {
				select {
				case wrong <- fmt.Sprintf("%s created with mode %o while the admin socket was opened", p, fi.Mode().Perm()):
				default:
				}
			}
		}
	}()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	for i := 0; i < 300; i++ {
		ln, err := listenAdmin(sock)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(sock)
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
			t.Fatalf("admin socket: %v, mode %v; want a 0600 socket", err, fi.Mode())
		}
		ln.Close()
		os.Remove(sock)
	}
	stop.Store(true)
	<-done
	select {
	case msg := <-wrong:
		t.Fatal(msg)
	default:
	}
	if entries, _ := os.ReadDir(filepath.Dir(sock)); len(entries) != 0 {
		t.Fatalf("listenAdmin left %d entries behind", len(entries))
	}
}
