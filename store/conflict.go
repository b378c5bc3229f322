package store

import (
	"fmt"
	"sort"
)

// ConflictError is a publish of name@version whose content differs from
// the package already stored. It matches ErrConflict with errors.Is and
// names the first difference, so a producer sees what to change.
type ConflictError struct {
	Name, Version string
	// Diff is the first difference, e.g. `file a.txt: sha256 differs
	// (stored sha256:…, new sha256:…)`.
	Diff string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("package %s@%s already exists with different content: %s", e.Name, e.Version, e.Diff)
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// PackageDiff describes the first difference in declared content between
// the stored package a and a new publish b, or "" when they are the same.
// Fields come first (producer, retention class, labels by key), then files
// in path order. Both packages list files sorted by path.
func PackageDiff(a, b *Package) string {
	switch {
	case a.Name != b.Name || a.Version != b.Version:
		return fmt.Sprintf("name@version: stored %s@%s, new %s@%s", a.Name, a.Version, b.Name, b.Version)
	case a.Producer != b.Producer:
		return fmt.Sprintf("producer: stored %q, new %q", a.Producer, b.Producer)
	case a.RetentionClass != b.RetentionClass:
		return fmt.Sprintf("retention_class: stored %q, new %q", a.RetentionClass, b.RetentionClass)
	}
	keys := map[string]bool{}
	for k := range a.Labels {
		keys[k] = true
	}
	for k := range b.Labels {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		av, inA := a.Labels[k]
		bv, inB := b.Labels[k]
		switch {
		case !inA:
			return fmt.Sprintf("label %s: not stored, new %q", k, bv)
		case !inB:
			return fmt.Sprintf("label %s: stored %q, missing from the new publish", k, av)
		case av != bv:
			return fmt.Sprintf("label %s: stored %q, new %q", k, av, bv)
		}
	}
	i, j := 0, 0
	for i < len(a.Files) || j < len(b.Files) {
		switch {
		case j == len(b.Files) || i < len(a.Files) && a.Files[i].Path < b.Files[j].Path:
			return fmt.Sprintf("file %s: stored, missing from the new publish", a.Files[i].Path)
		case i == len(a.Files) || b.Files[j].Path < a.Files[i].Path:
			return fmt.Sprintf("file %s: not stored, added by the new publish", b.Files[j].Path)
		}
		fa, fb := a.Files[i], b.Files[j]
		switch {
		case fa.Size != fb.Size:
			return fmt.Sprintf("file %s: size stored %d, new %d", fa.Path, fa.Size, fb.Size)
		case fa.Digest != fb.Digest:
			return fmt.Sprintf("file %s: sha256 stored %s, new %s", fa.Path, fa.Digest, fb.Digest)
		case fa.MediaType != fb.MediaType:
			return fmt.Sprintf("file %s: media_type stored %q, new %q", fa.Path, fa.MediaType, fb.MediaType)
		}
		i, j = i+1, j+1
	}
	return ""
}
