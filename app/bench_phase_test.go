package app

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// A bench run is a list of phases, each a group of rows. A phase runs as a
// subtest (or sub-benchmark): when it fails, its failure is reported, a
// FAILED row names it, and the next phase still runs, so a long run never
// loses the rows measured before the failure. Every phase's wall time and
// the load average are printed as it ends (and kept for the report), so
// the time budget of `make bench` is visible.

// benchPhaseTime is how long one phase took.
type benchPhaseTime struct {
	Name       string
	Took       time.Duration
	Failed     bool
	Load, Rows string
}

// benchPhase runs fn as the phase name of the run tb.
func benchPhase(tb testing.TB, rep *benchReport, name string, fn func(tb testing.TB)) {
	start := time.Now()
	before := len(rep.rows)
	ok := true
	switch x := tb.(type) {
	case *testing.T:
		ok = x.Run(name, func(t *testing.T) { fn(t) })
	case *testing.B:
		ok = x.Run(name, func(b *testing.B) { fn(b) })
	default:
		fn(tb)
	}
	took := time.Since(start)
	rep.mu.Lock()
	rows := len(rep.rows) - before
	rep.phases = append(rep.phases, benchPhaseTime{Name: name, Took: took, Failed: !ok, Load: loadAverage(), Rows: fmt.Sprint(rows)})
	rep.mu.Unlock()
	if !ok {
		rep.add(benchRow{Name: "FAILED: " + name, Ours: "-", Baseline: "-", Ratio: "-", Target: "-", Verdict: "FAILED",
			Note: fmt.Sprintf("the phase failed after %s and %d rows (its error is in the test log: --- FAIL lines of this phase)", took.Round(time.Second), rows)})
	}
	if rep.progress != nil {
		status := "done"
		if !ok {
			status = "FAILED"
		}
		fmt.Fprintf(rep.progress, "bench phase %-34s %-6s %8s  %2d rows  run so far %8s  load %s\n",
			name, status, took.Round(100*time.Millisecond), rows, time.Since(rep.started).Round(time.Second), loadAverage())
	}
}

// stepTimer prints how long each step of a phase took (to the report's
// progress writer, if any): where a phase's time goes.
type stepTimer struct {
	rep   *benchReport
	label string
	last  time.Time
}

func (r *benchReport) steps(label string) *stepTimer {
	return &stepTimer{rep: r, label: label, last: time.Now()}
}

// progressf prints to the progress writer, if any.
func (r *benchReport) progressf(format string, args ...any) {
	if r.progress != nil {
		fmt.Fprintf(r.progress, format, args...)
	}
}

// done reports the step that ends now.
func (s *stepTimer) done(step string) {
	now := time.Now()
	if s.rep.progress != nil {
		fmt.Fprintf(s.rep.progress, "bench step  %s: %s took %s (load %s)\n", s.label, step, now.Sub(s.last).Round(100*time.Millisecond), loadAverage())
	}
	s.last = now
}

// phaseTable lists the phases with their wall time: the time budget.
func (r *benchReport) phaseTable() string {
	var b strings.Builder
	b.WriteString("| phase | wall time | rows | load average (1, 5, 15 min) at its end |\n|---|---|---|---|\n")
	for _, p := range r.phases {
		took := p.Took.Round(time.Second).String()
		if p.Failed {
			took += " (FAILED)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", p.Name, took, p.Rows, p.Load)
	}
	// A phase may hold others (store at scale): the total is the wall time.
	fmt.Fprintf(&b, "| the whole run | %s | %d | %s |\n", time.Since(r.started).Round(time.Second), len(r.rows), loadAverage())
	return b.String()
}

// loadAverage is the 1, 5 and 15 minute load average of the machine.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], ", ")
}

// TestBenchPhaseFailureKeepsTheRows runs a bench of three phases, the
// second failing, in a child process: the child must fail, yet print the
// row measured before the failure and the one after it, a FAILED row for
// the failed phase, and the time of every phase.
func TestBenchPhaseFailureKeepsTheRows(t *testing.T) {
	if os.Getenv("ARTIFACTSTORE_BENCH_PHASE_CHILD") != "" {
		rep := &benchReport{progress: os.Stdout, started: time.Now()}
		row := func(name string) benchRow {
			return benchRow{Name: name, Ours: "1", Baseline: "1", Ratio: "1.00", Target: "x", Verdict: "met", Note: "n"}
		}
		benchPhase(t, rep, "before", func(t testing.TB) { rep.add(row("row before")) })
		benchPhase(t, rep, "broken", func(t testing.TB) { t.Fatal("the broken phase fails") })
		benchPhase(t, rep, "after", func(t testing.TB) { rep.add(row("row after")) })
		fmt.Println(rep.table())
		fmt.Println(rep.phaseTable())
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestBenchPhaseFailureKeepsTheRows$", "-test.v")
	cmd.Env = append(os.Environ(), "ARTIFACTSTORE_BENCH_PHASE_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("a bench with a failed phase passed:\n%s", out)
	}
	for _, want := range []string{"| row before |", "| row after |", "| FAILED: broken |", "bench phase broken", "FAILED",
		"| before |", "| broken |", "| after |", "the broken phase fails"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the output of a bench with a failed phase lacks %q:\n%s", want, out)
		}
	}
}
