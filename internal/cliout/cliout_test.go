package cliout

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	if err := JSON(&b, map[string]any{"a": 1, "b": []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if want := "{\n  \"a\": 1,\n  \"b\": [\n    \"x\"\n  ]\n}\n"; b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
	if err := JSON(&b, func() {}); err == nil {
		t.Fatal("a value JSON cannot encode gave no error")
	}
}

func TestTable(t *testing.T) {
	var b bytes.Buffer
	tw := Table(&b)
	fmt.Fprintln(tw, "ID\tNAME")
	fmt.Fprintln(tw, "1234\tx")
	tw.Flush()
	if want := "ID    NAME\n1234  x\n"; b.String() != want {
		t.Fatalf("got %q, want %q", b.String(), want)
	}
}

// NDJSON writes whole lines from concurrent callers and flushes a
// streamed response after each one.
func TestNDJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	send := NDJSON(rec)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := send(map[string]any{"g": g, "i": i, "pad": strings.Repeat("x", 200)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if !rec.Flushed {
		t.Fatal("a streamed response was not flushed")
	}
	lines := strings.Split(strings.TrimSuffix(rec.Body.String(), "\n"), "\n")
	if len(lines) != 400 {
		t.Fatalf("%d lines, want 400", len(lines))
	}
	for _, l := range lines {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %q is not one JSON value: %v", l, err)
		}
	}
	if err := NDJSON(&bytes.Buffer{})(func() {}); err == nil {
		t.Fatal("a value JSON cannot encode gave no error")
	}
}
