package store

import (
	"errors"
	"strings"
	"testing"
)

func TestPackageDiffNamesTheFirstDifference(t *testing.T) {
	base := func() *Package {
		return &Package{Name: "p", Version: "1", Producer: "ci", RetentionClass: "release", Labels: map[string]string{"a": "1", "b": "2"},
			Files: []File{{Path: "a.txt", Size: 1, Digest: "sha256:aa", MediaType: "text/plain"}, {Path: "c.txt", Size: 2, Digest: "sha256:cc", MediaType: "text/plain"}}}
	}
	for _, tc := range []struct {
		name   string
		change func(p *Package)
		want   string
	}{
		{"same", func(*Package) {}, ""},
		{"producer", func(p *Package) { p.Producer = "x"; p.Files[0].Size = 9 }, `producer: stored "ci", new "x"`},
		{"retention", func(p *Package) { p.RetentionClass = "nightly" }, `retention_class: stored "release", new "nightly"`},
		{"label changed", func(p *Package) { p.Labels["b"] = "3" }, `label b: stored "2", new "3"`},
		{"label added", func(p *Package) { p.Labels["0"] = "z" }, `label 0: not stored, new "z"`},
		{"label dropped", func(p *Package) { delete(p.Labels, "a") }, `label a: stored "1", missing from the new publish`},
		{"file added", func(p *Package) { p.Files = append([]File{{Path: "0.txt"}}, p.Files...) }, "file 0.txt: not stored, added by the new publish"},
		{"file added at end", func(p *Package) { p.Files = append(p.Files, File{Path: "z.txt"}) }, "file z.txt: not stored, added by the new publish"},
		{"file dropped", func(p *Package) { p.Files = p.Files[1:] }, "file a.txt: stored, missing from the new publish"},
		{"file size", func(p *Package) { p.Files[1].Size = 3 }, "file c.txt: size stored 2, new 3"},
		{"file digest", func(p *Package) { p.Files[1].Digest = "sha256:dd" }, "file c.txt: sha256 stored sha256:cc, new sha256:dd"},
		{"media type", func(p *Package) { p.Files[0].MediaType = "text/html" }, `file a.txt: media_type stored "text/plain", new "text/html"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := base()
			tc.change(b)
			if got := PackageDiff(base(), b); got != tc.want {
				t.Fatalf("PackageDiff = %q, want %q", got, tc.want)
			}
			if SamePackage(base(), b) != (tc.want == "") {
				t.Fatalf("SamePackage disagrees with PackageDiff")
			}
		})
	}
	err := error(&ConflictError{Name: "p", Version: "1", Diff: "producer: x"})
	if !errors.Is(err, ErrConflict) || strings.HasSuffix(err.Error(), ": conflict") || !strings.Contains(err.Error(), "producer: x") {
		t.Fatalf("ConflictError %q", err)
	}
}
