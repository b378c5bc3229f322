package app

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"artifactstore/internal/client"
)

func TestZZUploadProbe(t *testing.T) {
	dir := t.TempDir()
	pdir := filepath.Join(dir, "xfer-local")
	env := startService(t, benchLocalYAML(pdir, ""))
	defer env.stop()
	base := baselineServer(t, pdir)
	const size = 1 << 30
	ctx := context.Background()
	ours := func() time.Duration {
		seed := uint64(time.Now().UnixNano())
		sum := patternSHA(seed, size)
		br, err := env.c.Begin(ctx, client.Manifest{Name: "probe", Version: fmt.Sprint(seed), Producer: "bench", RetentionClass: "bench",
			Files: []client.File{{Path: "big.bin", Size: size, SHA256: sum}}})
		if err != nil {
			t.Fatal(err)
		}
		d := timedPUT(t, env.url+"/v1/uploads/"+br.UploadID+"/blobs/sha256:"+sum, env.token, newPattern(seed, size), size)
		if _, _, err := env.c.Commit(ctx, br.UploadID); err != nil {
			t.Fatal(err)
		}
		return d
	}
	baseline := func() time.Duration {
		return timedPUT(t, base+"/up", "", newPattern(uint64(time.Now().UnixNano()), size), size)
	}
	for _, step := range []string{"base", "base", "base", "ours", "ours", "ours", "base", "base"} {
		var d time.Duration
		if step == "ours" {
			d = ours()
		} else {
			d = baseline()
		}
		fmt.Printf("%s %.0f MB/s\n", step, float64(size)/d.Seconds()/1e6)
	}
}
