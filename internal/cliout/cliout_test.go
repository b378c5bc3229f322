package cliout

import (
	"bytes"
	"fmt"
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
