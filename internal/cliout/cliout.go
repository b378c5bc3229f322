// Package cliout is how commands print: indented JSON for --json and
// aligned columns for people, the same in every command of the binary.
package cliout

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"text/tabwriter"
)

// JSON writes v to w as indented JSON followed by a newline.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Table returns a writer that aligns tab-separated cells into columns two
// spaces apart; the caller writes one line a row and calls Flush.
func Table(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// NDJSON returns a function that writes each value it is given to w as one
// JSON line and, when w is an http.Flusher (a streamed response), flushes
// it at once, so the reader sees progress as it happens. The function may
// be called from several goroutines; lines never interleave. It returns
// the write error, if any (a reader that went away).
func NDJSON(w io.Writer) func(v any) error {
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	return func(v any) error {
		mu.Lock()
		defer mu.Unlock()
		if err := enc.Encode(v); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	}
}
