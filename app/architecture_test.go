package app

import (
	"bufio"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The rule "No S3 vocabulary outside backends/s3 and the config that feeds
// it" (docs/ARCHITECTURE.md, "Dependency rules"), enforced on every .go,
// .md and .yaml file of the module: code, comments and docs. Elsewhere
// prose says "storage service", "object", "upload in parts", "direct URL".

// s3Words is the vocabulary: matched case-insensitively inside
// identifiers too (NewBucket, putMultipart, minio-go).
var s3Words = regexp.MustCompile(`(?i)bucket|multipart|region|presign|minio`)

// s3Home is where the vocabulary is the subject (a path ending in / is a
// directory): the S3 backend and the helper that drives the real S3
// servers in tests; the test of the S3 setup steps in docs/OPERATOR.md
// (the AWS CLI commands they must contain); and this test, which names
// the words.
var s3Home = []string{"backends/s3/", "app/operator_doc_test.go", "app/architecture_test.go"}

// s3DocSections are the documentation sections about configuring and
// running S3 backends (file, exact heading; a section runs to the next
// heading of the same or a higher level).
var s3DocSections = map[string][]string{
	"docs/OPERATOR.md": {
		"## 2. A user and a bucket on RGW",
		"## 4. The config file: a Ceph RGW example",
		"## 5. Self-test the backend",
	},
	"docs/ARCHITECTURE.md": {"### S3 backend (`backends/s3`)"},
}

// drivesS3Servers matches the imports of Go tests that run against the
// real S3 servers (ARCHITECTURE.md: the client library is imported only by
// backends/s3, its test helper and tests).
var drivesS3Servers = regexp.MustCompile(`"artifactstore/backends/s3/s3test"|"github.com/minio/minio-go/v7"`)

// otherSenses are the same words with a meaning that is not S3's; they are
// removed from a line before it is checked. Each is as narrow as its
// sense allows.
var otherSenses = []*regexp.Regexp{
	// bbolt, whose tables are buckets: its API and "bbolt bucket" in prose.
	regexp.MustCompile(`\.(Create|Delete|ForEach)?Bucket(IfNotExists)?\(|\bbolt\.Bucket\b|InlineBucketInuse|\bbuckets\.go\b|(?i:bbolt buckets?)`),
	// HTTP forms (RFC 7578): the Go package, the media type, and prose.
	regexp.MustCompile(`mime/multipart|\bmultipart\.[A-Z]\w*|multipart/form-data|(?i:multipart (form|body|reader|POST|part)s?\b)`),
	// Prometheus histogram buckets.
	regexp.MustCompile(`\b\w*Buckets\(|\bBuckets:|histogram buckets`),
	// The S3 config keys and fields themselves, wherever a config is
	// written or named: the config that feeds the backend.
	regexp.MustCompile(`\b(multipart_threshold_bytes|multipart_chunk_bytes|multipart_parts_in_flight|bucket_lookup)\b|\bMultipart(Threshold|Chunk)Bytes\b|\bMultipartPartsInFlight\b|(^|\\n)\s*(bucket|region): |\bbackends\.[\w-]+\.(bucket|region)\b`),
}

// storeOwnsBbolt: in store/ "bucket" is bbolt's word for its tables
// (store/buckets.go lists them all); the other words are not allowed there.
func storeOwnsBbolt(path string) bool { return strings.HasPrefix(path, "store/") }

var anyBucket = regexp.MustCompile(`(?i)bucket`)

func TestNoS3VocabularyOutsideBackend(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	checked := 0
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, root+string(filepath.Separator)))
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && p != root {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(p) {
		case ".go", ".md", ".yaml", ".yml":
		default:
			return nil
		}
		for _, h := range s3Home {
			if rel == h || strings.HasSuffix(h, "/") && strings.HasPrefix(rel, h) {
				return nil
			}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(rel, "_test.go") && drivesS3Servers.Match(b) {
			return nil
		}
		checked++
		for _, v := range s3Violations(rel, string(b)) {
			t.Errorf("%s: S3 vocabulary outside backends/s3 (say storage service, object, upload in parts, direct URL): %s", rel, v)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d files under %s", checked, root)
	}
}

// s3Violations returns "line N: text" for each line of a file that uses
// the vocabulary outside the sections and senses allowed above.
func s3Violations(rel, text string) []string {
	var out []string
	sections := s3DocSections[rel]
	inAllowed, allowedLevel, inFence := false, 0, false
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasSuffix(rel, ".md") {
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inFence = !inFence
			}
			if level := headingLevel(line); level > 0 && !inFence {
				if inAllowed && level <= allowedLevel {
					inAllowed = false
				}
				for _, s := range sections {
					if line == s {
						inAllowed, allowedLevel = true, level
					}
				}
			}
			if inAllowed {
				continue
			}
		}
		for _, re := range otherSenses {
			line = re.ReplaceAllString(line, "")
		}
		if storeOwnsBbolt(rel) {
			line = anyBucket.ReplaceAllString(line, "")
		}
		if s3Words.MatchString(line) {
			out = append(out, "line "+strconv.Itoa(n)+": "+strings.TrimSpace(sc.Text()))
		}
	}
	return out
}

func headingLevel(line string) int {
	n := 0
	for n < len(line) && line[n] == '#' {
		n++
	}
	if n == 0 || n >= len(line) || line[n] != ' ' {
		return 0
	}
	return n
}

// TestS3VocabularyCheck: the check itself catches each word in code,
// comments and docs, also inside identifiers, and lets the other senses
// and the allowed sections pass.
func TestS3VocabularyCheck(t *testing.T) {
	for _, c := range []struct {
		rel, text string
		bad       int
	}{
		{"web/x.go", "// writes the object to the bucket\n", 1},
		{"web/x.go", "c.NewBucket(t)\nputMultipart(x)\n", 2},
		{"docs/API.md", "a presigned URL\nthe MinIO server\nus-east-1 region\n", 3},
		{"web/x.go", "import \"mime/multipart\"\nmw := multipart.NewWriter(b) // a multipart form\n", 0},
		{"web/x.go", "tx.Bucket(k)\ntx.CreateBucketIfNotExists(k)\n// the bbolt bucket\n", 0},
		{"web/x.go", "Buckets: prometheus.ExponentialBuckets(1, 2, 3),\n", 0},
		{"app/x_test.go", "cfg := `\n    bucket: artifacts\n    multipart_chunk_bytes: 5MiB\n`\n", 0},
		{"app/x_test.go", "const s = \"  s:\\n    type: s3\\n    bucket: some-name\\n\"\n", 0},
		{"app/x_test.go", "// the bucket: gone\n", 1},
		{"store/x.go", "// the packages bucket\nb := tx.Bucket(bucketPackages)\n", 0},
		{"store/x.go", "// the S3 multipart upload\n", 1},
		{"docs/OPERATOR.md", "## 4. The config file: a Ceph RGW example\nbucket: a\n### S3 keys and their rules\nregion\n## 6. Next\nthe bucket\n", 1},
		{"docs/OPERATOR.md", "## 1. Intro\n```\n# not a heading\n```\nMinIO\n", 1},
	} {
		if got := s3Violations(c.rel, c.text); len(got) != c.bad {
			t.Errorf("%s %q: %d violations %v, want %d", c.rel, c.text, len(got), got, c.bad)
		}
	}
}
