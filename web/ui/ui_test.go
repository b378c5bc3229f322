package ui

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"artifactstore/store"
)

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 10 << 20: "10 MiB",
		5 << 30: "5.0 GiB", 1<<40 + 1<<39: "1.5 TiB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestRelTime(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for d, want := range map[time.Duration]string{
		10 * time.Second: "just now", -10 * time.Second: "in a few seconds", time.Minute: "1 minute ago",
		17 * time.Minute: "17 minutes ago", 3 * time.Hour: "3 hours ago", -3 * time.Hour: "in 3 hours",
		50 * time.Hour: "2 days ago", 100 * 24 * time.Hour: "3 months ago", 800 * 24 * time.Hour: "2 years ago",
	} {
		if got := relTime(now.Add(-d), now); got != want {
			t.Errorf("relTime(now-%s) = %q, want %q", d, got, want)
		}
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/packages/a": "/ui/packages/a", "/ui/?q=x": "/ui/?q=x", "": "/ui/", "https://evil.example/ui/": "/ui/",
		"//evil.example/ui/": "/ui/", "/v1/packages": "/ui/", "/ui/\\evil": "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseLabels(t *testing.T) {
	got, err := parseLabels("team=web, git.sha=abc  os=linux")
	if err != nil || fmt.Sprint(got) != "map[git.sha:abc os:linux team:web]" {
		t.Fatalf("parseLabels: %v %v", got, err)
	}
	if _, err := parseLabels("team"); err == nil {
		t.Fatal("a label without = was accepted")
	}
}

func TestBuildTree(t *testing.T) {
	files := []fileRow{{File: store.File{Path: "z.txt", Size: 1}}, {File: store.File{Path: "a/b/c.bin", Size: 10}},
		{File: store.File{Path: "a/d.txt", Size: 100}}, {File: store.File{Path: "a/b/e.bin", Size: 1000}}}
	root := buildTree(files)
	var lines []string
	var walk func(n *treeNode, depth int)
	walk = func(n *treeNode, depth int) {
		for _, c := range n.Children {
			kind := "dir"
			if c.File != nil {
				kind = "file"
			}
			lines = append(lines, fmt.Sprintf("%s%s %s %d/%d", strings.Repeat(" ", depth), kind, c.Name, c.Size, c.Files))
			walk(c, depth+1)
		}
	}
	walk(root, 0)
	want := "dir a 1110/3|" + " dir b 1010/2|  file c.bin 10/1|  file e.bin 1000/1| file d.txt 100/1|" + "file z.txt 1/1"
	if got := strings.Join(lines, "|"); got != want || root.Size != 1111 || root.Files != 4 {
		t.Fatalf("tree:\n%s\nwant\n%s (root %d/%d)", got, want, root.Size, root.Files)
	}
}

func TestCountCopies(t *testing.T) {
	files := []store.File{{Digest: "a"}, {Digest: "b"}, {Digest: "c"}, {Digest: "d"}}
	locs := map[string][]store.Location{
		"a": {{Status: store.StatusVerified}, {Status: store.StatusStored}},
		"b": {{Status: store.StatusMismatch}},
		"c": {{Status: "replicating"}},
	}
	c := countCopies(files, locs)
	if c.Failed != 1 || c.Pending != 2 || c.Unreadable != 3 || c.Verified != 1 || c.Stored != 1 || c.Total != 4 || c.AllVerified() {
		t.Fatalf("copies: %+v", c)
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"web-1.0": "web-1.0", "a b": "'a b'", "it's": `'it'\''s'`, "": "''",
		"http://127.0.0.1:8080/v1/packages/a/1/files/x%20y": "http://127.0.0.1:8080/v1/packages/a/1/files/x%20y"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSentence(t *testing.T) {
	for in, want := range map[string]string{"": "", "failed locations are never served": "Failed locations are never served.", "ok.": "Ok.", "éa": "Éa."} {
		if got := sentence(in); got != want {
			t.Errorf("sentence(%q) = %q, want %q", in, got, want)
		}
	}
}
