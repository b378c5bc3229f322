package app

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"
)

// Exit codes every command shares (README "The command line"). A command
// with finer meanings (verify) states them in its own help.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// exitCodesHelp ends the help of every command that does not state its own.
const exitCodesHelp = `Exit codes: 0 success; 1 the operation failed; 2 bad usage (unknown command
or flag, missing argument or required flag) or an invalid configuration.`

// UsageError is a command line the CLI cannot run as written. It exits 2
// and names the command whose help explains the right form.
type UsageError struct {
	// Command is the full command path, e.g. "artifactstore push".
	Command string
	Msg     string
}

func (e *UsageError) Error() string {
	return fmt.Sprintf("%s (see '%s --help')", e.Msg, e.Command)
}

// ExitCode makes a UsageError an exit code 2 wherever it surfaces.
func (e *UsageError) ExitCode() int { return exitUsage }

// exitCodeOf maps an error returned by the CLI to the process exit code:
// bad usage and configuration errors are 2 whatever a command wrapped them
// in; other ExitCoders say their own; anything else is 1.
func exitCodeOf(err error) int {
	var ue *UsageError
	var ce *ConfigError
	if errors.As(err, &ue) || errors.As(err, &ce) {
		return exitUsage
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		return ec.ExitCode()
	}
	return exitFail
}

// level is one node of the command tree as the argument scanner sees it.
type level struct {
	path     string // "artifactstore storage check"
	flags    []cli.Flag
	subs     []*cli.Command
	action   bool
	hideHelp bool
	skip     bool // SkipFlagParsing: everything is an argument
}

func rootLevel(a *cli.App) level {
	flags := slices.Clone(a.Flags)
	if !a.HideVersion {
		flags = append(flags, &cli.BoolFlag{Name: "version", Aliases: []string{"v"}})
	}
	return level{path: a.Name, flags: flags, subs: a.Commands, action: a.Action != nil, hideHelp: a.HideHelp}
}

func commandLevel(parent string, c *cli.Command) level {
	return level{path: parent + " " + c.Name, flags: c.Flags, subs: c.Subcommands, action: c.Action != nil, hideHelp: c.HideHelp, skip: c.SkipFlagParsing}
}

// findFlag returns the flag a token such as "--to", "-f" or "--to=DIR"
// names, whether the value is attached, and whether the token asks for help.
func (l level) findFlag(tok string) (f cli.Flag, attached, help bool) {
	name := strings.TrimLeft(tok, "-")
	name, _, attached = strings.Cut(name, "=")
	if !l.hideHelp && (name == "help" || name == "h") {
		return nil, attached, true
	}
	for _, f := range l.flags {
		if slices.Contains(f.Names(), name) {
			return f, attached, false
		}
	}
	return nil, attached, false
}

func (l level) flagNames() []string {
	var names []string
	for _, f := range l.flags {
		names = append(names, f.Names()[0])
	}
	if !l.hideHelp {
		names = append(names, "help")
	}
	return names
}

func isFlagToken(tok string) bool { return len(tok) > 1 && tok[0] == '-' && tok != "--" }

func takesValue(f cli.Flag) bool {
	if tv, ok := f.(interface{ TakesValue() bool }); ok {
		return tv.TakesValue()
	}
	return true
}

// prepareArgs checks a command line against the command tree before
// urfave/cli parses it, and returns it in the form urfave/cli v2 parses:
// flags before arguments. urfave/cli v2 (like the standard flag package)
// stops parsing flags at the first argument, so `push site 2.0.0 site
// --producer alice` would report --producer as missing; here flags may
// come anywhere after their command (a literal "--" ends them).
//
// It answers a UsageError for an unknown command, an unknown flag and a
// missing required flag, with a suggestion where one is close, instead of
// urfave/cli's whole help page and exit codes 1 or 3.
func prepareArgs(a *cli.App, args []string, environ []string) ([]string, error) {
	if len(args) == 0 {
		return args, nil
	}
	out := []string{args[0]}
	l := rootLevel(a)
	i := 1
	for {
		if l.skip {
			return append(out, args[i:]...), nil
		}
		if len(l.subs) == 0 || (l.action && !hasSub(l, args[i:])) {
			return prepareLeaf(l, out, args[i:], environ)
		}
		// A command with subcommands: its own flags, then a subcommand name.
		for i < len(args) && isFlagToken(args[i]) {
			f, attached, help := l.findFlag(args[i])
			if help {
				return append(out, args[i:]...), nil
			}
			if f == nil {
				return nil, unknownFlag(l, args[i])
			}
			out = append(out, args[i])
			if takesValue(f) && !attached && i+1 < len(args) {
				i++
				out = append(out, args[i])
			}
			i++
		}
		if i == len(args) || args[i] == "--" {
			return append(out, args[i:]...), nil
		}
		sub := findSub(l.subs, args[i])
		if sub == nil && args[i] == "help" && !l.hideHelp {
			// "artifactstore help push" means "artifactstore push --help".
			return prepareArgs(a, append(append(out, args[i+1:]...), "--help"), environ)
		}
		if sub == nil {
			return nil, unknownCommand(l, args[i])
		}
		out = append(out, args[i])
		l = commandLevel(l.path, sub)
		i++
	}
}

func hasSub(l level, rest []string) bool {
	for _, tok := range rest {
		if !isFlagToken(tok) {
			return findSub(l.subs, tok) != nil
		}
	}
	return false
}

func findSub(subs []*cli.Command, name string) *cli.Command {
	for _, c := range subs {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// prepareLeaf moves the flags of a command without subcommands in front of
// its arguments and checks required flags.
func prepareLeaf(l level, out, rest []string, environ []string) ([]string, error) {
	var flags, pos []string
	dashdash, help := false, false
	set := map[string]bool{}
	for j := 0; j < len(rest); j++ {
		tok := rest[j]
		if tok == "--" {
			dashdash = true
			pos = append(pos, rest[j+1:]...)
			break
		}
		if !isFlagToken(tok) {
			pos = append(pos, tok)
			continue
		}
		f, attached, isHelp := l.findFlag(tok)
		if isHelp {
			help = true
			flags = append(flags, tok)
			continue
		}
		if f == nil {
			return nil, unknownFlag(l, tok)
		}
		flags = append(flags, tok)
		for _, n := range f.Names() {
			set[n] = true
		}
		if takesValue(f) && !attached && j+1 < len(rest) {
			j++
			flags = append(flags, rest[j])
		}
	}
	if !help {
		var missing []string
		for _, f := range l.flags {
			rf, ok := f.(cli.RequiredFlag)
			if !ok || !rf.IsRequired() || set[f.Names()[0]] || fromEnv(f, environ) {
				continue
			}
			missing = append(missing, "--"+f.Names()[0])
		}
		if len(missing) > 0 {
			noun := "flag"
			if len(missing) > 1 {
				noun = "flags"
			}
			return nil, &UsageError{Command: l.path, Msg: fmt.Sprintf("%srequired %s %s not given", commandPrefix(l.path), noun, strings.Join(missing, ", "))}
		}
	}
	out = append(out, flags...)
	if dashdash {
		out = append(out, "--")
	}
	return append(out, pos...), nil
}

func fromEnv(f cli.Flag, environ []string) bool {
	ev, ok := f.(interface{ GetEnvVars() []string })
	if !ok {
		return false
	}
	for _, name := range ev.GetEnvVars() {
		if v, ok := os.LookupEnv(name); ok && v != "" {
			return true
		}
		for _, kv := range environ {
			if v, ok := strings.CutPrefix(kv, name+"="); ok && v != "" {
				return true
			}
		}
	}
	return false
}

// commandPrefix is "push: " for "artifactstore push", "" for the root.
func commandPrefix(path string) string {
	_, sub, ok := strings.Cut(path, " ")
	if !ok {
		return ""
	}
	return sub + ": "
}

func unknownFlag(l level, tok string) error {
	name, _, _ := strings.Cut(strings.TrimLeft(tok, "-"), "=")
	msg := fmt.Sprintf("%sunknown flag %s", commandPrefix(l.path), tok)
	if s := nearest(name, l.flagNames()); s != "" {
		msg += fmt.Sprintf(" (did you mean --%s?)", s)
	}
	return &UsageError{Command: l.path, Msg: msg}
}

func unknownCommand(l level, name string) error {
	var names []string
	for _, c := range l.subs {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	sort.Strings(names)
	what := "unknown command"
	if p := commandPrefix(l.path); p != "" {
		what = p + "unknown subcommand"
	}
	msg := fmt.Sprintf("%s %q", what, name)
	if s := nearest(name, names); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	msg += "; commands: " + strings.Join(names, ", ")
	return &UsageError{Command: l.path, Msg: msg}
}

// finishCommands applies what every command shares, including commands
// other packages register: usage errors exit 2 without the whole help page,
// and every help states the exit codes.
func finishCommands(a *cli.App) {
	onUsage := func(path string) cli.OnUsageErrorFunc {
		return func(_ *cli.Context, err error, _ bool) error {
			return &UsageError{Command: path, Msg: err.Error()}
		}
	}
	a.OnUsageError = onUsage(a.Name)
	if !strings.Contains(a.Description, "Exit codes") {
		a.Description = strings.TrimSpace(a.Description + "\n" + exitCodesHelp)
	}
	var walk func(parent string, cs []*cli.Command)
	walk = func(parent string, cs []*cli.Command) {
		for _, c := range cs {
			path := parent + " " + c.Name
			if c.OnUsageError == nil {
				c.OnUsageError = onUsage(path)
			}
			if !strings.Contains(c.Description, "Exit codes") {
				c.Description = strings.TrimSpace(c.Description + "\n" + exitCodesHelp)
			}
			walk(path, c.Subcommands)
		}
	}
	walk(a.Name, a.Commands)
}

// nearest returns the candidate closest to word when it is close enough to
// be a plausible typo (edit distance at most a third of the word, at least
// 1, or one is a prefix of the other), else "".
func nearest(word string, candidates []string) string {
	best, bestD := "", 1<<30
	for _, c := range candidates {
		d := editDistance(word, c)
		if d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	if bestD <= max(1, len(word)/3) || (len(word) >= 3 && (strings.HasPrefix(best, word) || strings.HasPrefix(word, best))) {
		return best
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
