package web

import (
	"io"
	"testing"
	"time"
)

// blockingReader delivers one byte, then blocks until closed.
type blockingReader struct {
	sent bool
	stop chan struct{}
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		p[0] = 'x'
		return 1, nil
	}
	<-b.stop
	return 0, io.ErrUnexpectedEOF
}
func (b *blockingReader) Close() error { return nil }

// TestSlotGoesToNewUploadWhenHolderLags: with every slot held by bodies
// that send below the minimum rate, a new upload takes the slot of one
// that has lagged for the grace period, and that body's reads fail.
func TestSlotGoesToNewUploadWhenHolderLags(t *testing.T) {
	slots := newUploadSlots(2, 100*time.Millisecond)
	var bodies []*countingBody
	for i := 0; i < 2; i++ {
		br := &blockingReader{stop: make(chan struct{})}
		defer close(br.stop)
		b := &countingBody{ReadCloser: br, minRate: 1024, window: 10 * time.Second}
		if _, ok := slots.acquire(b); !ok {
			t.Fatal("free slot refused")
		}
		bodies = append(bodies, b)
		go func() {
			buf := make([]byte, 10)
			b.Read(buf)
			b.Read(buf) // blocks
		}()
	}
	if _, ok := slots.acquire(nil); ok {
		t.Fatal("a slot was taken over before its holder lagged for the grace period")
	}
	time.Sleep(150 * time.Millisecond)
	if _, ok := slots.acquire(nil); !ok {
		t.Fatal("no slot for a new upload although both holders lag")
	}
	cut := 0
	for _, b := range bodies {
		b.mu.Lock()
		if b.cut != nil {
			cut++
		}
		b.mu.Unlock()
	}
	if cut != 1 || slots.inUse() != 2 {
		t.Fatalf("%d bodies cut, %d slots in use; want 1 and 2", cut, slots.inUse())
	}
}

// slowThenEOF delivers one byte, waits, then ends.
type slowThenEOF struct{ sent bool }

func (r *slowThenEOF) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		p[0] = 'x'
		return 1, nil
	}
	time.Sleep(100 * time.Millisecond)
	return 0, io.EOF
}
func (r *slowThenEOF) Close() error { return nil }

// TestSlotOfEndedBodyIsNotTakenOver: a holder whose (small, slow) body has
// ended is working (writing to a backend, committing); it keeps its slot
// whatever its rate was, and its connection is left alone.
func TestSlotOfEndedBodyIsNotTakenOver(t *testing.T) {
	slots := newUploadSlots(1, 50*time.Millisecond)
	b := &countingBody{ReadCloser: &slowThenEOF{}, minRate: 1 << 20, window: 10 * time.Second}
	if _, ok := slots.acquire(b); !ok {
		t.Fatal("free slot refused")
	}
	if _, err := io.ReadAll(b); err != nil {
		t.Fatal(err)
	}
	if _, ok := slots.acquire(nil); ok {
		t.Fatal("the slot of an upload whose body had ended was taken over")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cut != nil {
		t.Fatalf("an ended body was cut off: %v", b.cut)
	}
}
