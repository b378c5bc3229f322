package manifest

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidatePath(t *testing.T) {
	good := []string{"a", "a/b/c.txt", "dir/.hidden", "a..b", "ü/é.txt", "x/y-z_1.tar.gz"}
	bad := []string{"", "/abs", "../x", "a/../b", "a/..", "..", ".", "a/./b", "a//b", "a/", `a\b`, "a\x00b", "a\nb", strings.Repeat("a", 1025), "\xff"}
	for _, p := range good {
		if err := ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q) = %v", p, err)
		}
	}
	for _, p := range bad {
		if err := ValidatePath(p); err == nil || err.Code != CodeInvalidPath {
			t.Errorf("ValidatePath(%q) = %v, want invalid_path", p, err)
		}
	}
}

func TestValidateNames(t *testing.T) {
	for _, n := range []string{"a", "app", "my-app_2.0", strings.Repeat("n", 128)} {
		if err := ValidateName(n); err != nil {
			t.Errorf("name %q: %v", n, err)
		}
	}
	for _, n := range []string{"", "-x", ".x", "a b", "a/b", "a@b", strings.Repeat("n", 129), "é"} {
		if err := ValidateName(n); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
	for _, v := range []string{"1", "1.0.0", "1.0.0-rc.1+build.5", "v2"} {
		if err := ValidateVersion(v); err != nil {
			t.Errorf("version %q: %v", v, err)
		}
	}
	for _, v := range []string{"", "1 0", "../1", "1/2", "+1"} {
		if err := ValidateVersion(v); err == nil {
			t.Errorf("version %q accepted", v)
		}
	}
}

// validate decodes and validates raw manifest JSON; it must never panic and
// any accepted manifest must satisfy every rule on re-check.
func validate(t *testing.T, raw []byte) {
	m, err := Decode(bytes.NewReader(raw), 1<<20)
	if err != nil {
		return
	}
	if err := m.Validate(100); err != nil {
		return
	}
	for _, f := range m.Files {
		if ValidatePath(f.Path) != nil || !utf8.ValidString(f.Path) || strings.Contains(f.Path, "..") && ValidatePath(f.Path) != nil {
			t.Fatalf("accepted bad path %q", f.Path)
		}
	}
	if err := m.Validate(100); err != nil {
		t.Fatalf("a validated manifest fails a second validation: %v", err)
	}
}

func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"name":"a","version":"1","producer":"p","retention_class":"r","files":[{"path":"x","size":1,"sha256":"` + strings.Repeat("a", 64) + `"}]}`))
	f.Add([]byte(`{"name":"a","version":"1","producer":"p","retention_class":"r","labels":{"k":"v"},"files":[]}`))
	f.Add([]byte(`{"name":"../a"}`))
	f.Fuzz(validate)
}

func FuzzPath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "a\\b", "/x", "a//b", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if ValidatePath(p) != nil {
			return
		}
		for _, seg := range strings.Split(p, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted %q with segment %q", p, seg)
			}
		}
		if strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\\\x00") {
			t.Fatalf("accepted %q", p)
		}
	})
}

func FuzzNames(f *testing.F) {
	for _, s := range []string{"app", "1.0.0-rc1", "a b", "", "ci-bot"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, name, labelValue string) {
		if ValidateName(name) == nil && (strings.ContainsAny(name, "/ \x00@") || len(name) > MaxNameLen) {
			t.Fatalf("accepted name %q", name)
		}
		if ValidateVersion(name) == nil && strings.ContainsAny(name, "/ \x00") {
			t.Fatalf("accepted version %q", name)
		}
		if ValidateLabel("k", labelValue) == nil && (!utf8.ValidString(labelValue) || strings.ContainsAny(labelValue, "\n\r\x00")) {
			t.Fatalf("accepted label value %q", labelValue)
		}
	})
}
