// Package cliout is how commands print: indented JSON for --json and
// aligned columns for people, the same in every command of the binary.
package cliout

import (
	"encoding/json"
	"io"
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
