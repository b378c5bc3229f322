package local

import "os"

// writeBehindBytes is how much of a temp file is written before the
// kernel is asked to start putting that range on disk. Without it a large
// upload stays in the page cache (a 1 GiB file is below the kernel's
// background write-back threshold on a machine with 24 GiB) until the
// final fsync, which then writes all of it while the client waits:
// receive + hash + write into memory, then the whole disk write, one
// after another. Starting write-back every few MiB lets the disk work
// while the rest arrives, so the fsync finds little left (databases do the
// same, as "bytes per sync").
const writeBehindBytes = 8 << 20

// writeBehind is the temp file's writer during a put: it passes every
// write through and starts write-back of each writeBehindBytes written.
// It changes nothing about durability: the caller still fsyncs the file
// before the rename, and that fsync reports any failure to write it.
type writeBehind struct {
	f       *os.File
	every   int64 // writeBehindBytes; tests make it smaller
	off     int64 // bytes written so far
	started int64 // bytes whose write-back has been started
}

func newWriteBehind(f *os.File) *writeBehind { return &writeBehind{f: f, every: writeBehindBytes} }

func (w *writeBehind) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.started >= w.every {
		// A hint only: an error here (a file system without the call)
		// leaves the whole write to the fsync, as before.
		_ = startWriteBack(w.f, w.started, w.off-w.started)
		w.started = w.off
	}
	return n, err
}
