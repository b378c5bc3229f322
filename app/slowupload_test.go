package app

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"artifactstore/internal/client"
)

// TestTricklingUploadsDoNotStarvePublishers (finding 2, acceptance): 64
// uploads that declare 1 MiB and send one byte every 20 s are cut off
// within the configured rate window, and meanwhile 8 normal publishers
// keep at least 90% of the throughput they have without the tricklers.
//
// Before the fix each byte reset body_read_timeout, so the tricklers held
// all 64 slots of max_concurrent_uploads and every other upload got 503
// for as long as they liked.
func TestTricklingUploadsDoNotStarvePublishers(t *testing.T) {
	const (
		window     = 2 * time.Second
		tricklers  = 64
		publishers = 8
		round      = 6 * time.Second
		rounds     = 5 // the median of 5 rounds: on a shared 2-core machine one round's ratio varies by +-15%
	)
	cfg := strings.Replace(localConfig, "server:\n",
		fmt.Sprintf("server:\n  max_concurrent_uploads: 64\n  min_body_rate: 1024\n  body_rate_window: %s\n  body_read_timeout: 60s\n", window), 1)
	// Two identical services in this process: in each round one is
	// attacked and the other, publishing at the same time on the same
	// machine, is the baseline. The machine is shared with other work, so
	// a baseline measured at another time would not compare.
	envs := []*testEnv{startService(t, cfg), startService(t, cfg)}
	conns := newConnLog()
	for _, env := range envs {
		conns.instrument(env.c.HTTP.Transport.(*http.Transport))
	}

	type target struct{ session, digest string }
	targetsOn := func(env *testEnv, r int) []target {
		var out []target
		for i := 0; i < tricklers; i++ {
			data := randBytes(uint64(1000+r*tricklers+i), 1<<20)
			br, err := env.c.Begin(ctxT(t), manifestOf(fmt.Sprintf("trickle%d-%d", r, i), "1", "ci", "release", map[string][]byte{"big": data}))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, target{br.UploadID, sha(data)})
		}
		return out
	}

	// publish runs 8 publishers against env until ctx ends and returns the
	// completed publishes.
	var seq atomic.Int64
	publish := func(ctx context.Context, env *testEnv) int64 {
		var done atomic.Int64
		var wg sync.WaitGroup
		for p := 0; p < publishers; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					n := seq.Add(1)
					files := map[string][]byte{"f.bin": randBytes(uint64(n), 64<<10)}
					err := publishRetrying(ctx, env.c, manifestOf(fmt.Sprintf("pub%d", n), "1", "ci", "release", files), files)
					if err == nil {
						done.Add(1)
					} else if ctx.Err() == nil {
						t.Errorf("publish: %v", err)
						if h := conns.about(err); h != "" {
							t.Errorf("the failed request's %s", h)
						}
					}
				}
			}()
		}
		wg.Wait()
		return done.Load()
	}

	// trickle starts uploads that send one byte now and one every 20 s,
	// and reports how long the server let each connection live.
	cutAfter := make(chan time.Duration, tricklers*rounds)
	var trickling sync.WaitGroup
	trickle := func(env *testEnv, targets []target) {
		addr := strings.TrimPrefix(env.url, "http://")
		for _, tg := range targets {
			trickling.Add(1)
			go func() {
				defer trickling.Done()
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					cutAfter <- -1
					return
				}
				defer conn.Close()
				start := time.Now()
				fmt.Fprintf(conn, "PUT /v1/uploads/%s/blobs/sha256:%s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n",
					tg.session, tg.digest, env.token, 1<<20)
				closed := make(chan struct{})
				go func() {
					io.Copy(io.Discard, bufio.NewReader(conn))
					close(closed)
				}()
				for time.Since(start) < 30*time.Second {
					conn.Write([]byte{0})
					select {
					case <-closed:
						cutAfter <- time.Since(start)
						return
					case <-time.After(20 * time.Second):
					}
				}
				cutAfter <- time.Since(start)
			}()
		}
	}

	var ratios []float64
	var rows []string
	for r := 0; r < rounds; r++ {
		attacked, control := envs[r%2], envs[1-r%2]
		targets := targetsOn(attacked, r)
		trickle(attacked, targets)
		time.Sleep(100 * time.Millisecond) // let them take the slots
		ctx, cancel := context.WithTimeout(context.Background(), round)
		var a, c int64
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); a = publish(ctx, attacked) }()
		go func() { defer wg.Done(); c = publish(ctx, control) }()
		wg.Wait()
		cancel()
		if c < 20 {
			t.Fatalf("round %d: the baseline completed only %d publishes; too few to compare", r, c)
		}
		ratios = append(ratios, float64(a)/float64(c))
		rows = append(rows, fmt.Sprintf("%d/%d", a, c))
	}
	trickling.Wait()
	close(cutAfter)

	var cuts []time.Duration
	for d := range cutAfter {
		if d < 0 {
			t.Fatal("a trickler could not connect")
		}
		cuts = append(cuts, d)
	}
	sort.Slice(cuts, func(i, j int) bool { return cuts[i] < cuts[j] })
	worst := cuts[len(cuts)-1]
	t.Logf("%d trickling uploads cut off after %s (median) .. %s (worst); rate window %s", len(cuts), cuts[len(cuts)/2].Round(time.Millisecond), worst.Round(time.Millisecond), window)
	if worst > window+2*time.Second {
		t.Errorf("a trickling upload held its connection for %s with a %s rate window", worst, window)
	}
	sorted := append([]float64(nil), ratios...)
	sort.Float64s(sorted)
	median := sorted[len(sorted)/2]
	t.Logf("publishes per %s round, attacked/baseline: %s; ratios %.3f; median %.3f", round, strings.Join(rows, " "), ratios, median)
	if median < 0.9 {
		t.Errorf("publishers kept %.1f%% (median of %d rounds) of their throughput under the trickle attack; want at least 90%%", 100*median, rounds)
	}
}

// publishRetrying publishes, retrying uploads answered 503
// too_many_uploads (Retry-After) after a short pause, as a patient client
// would; it fails only when ctx ends or on another error.
func publishRetrying(ctx context.Context, c *client.Client, m client.Manifest, files map[string][]byte) error {
	br, err := c.Begin(ctx, m)
	if err != nil {
		return err
	}
	bySHA := map[string][]byte{}
	for _, b := range files {
		bySHA[sha(b)] = b
	}
	for _, n := range br.Needed {
		for {
			err := c.Upload(ctx, br.UploadID, n.SHA256, n.Size, bytes.NewReader(bySHA[n.SHA256]))
			if err == nil {
				break
			}
			if ae, ok := err.(*client.Error); !ok || ae.Status != http.StatusServiceUnavailable || ctx.Err() != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	_, _, err = c.Commit(ctx, br.UploadID)
	return err
}
