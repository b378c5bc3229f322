package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"

	"artifactstore/internal/client"
	"artifactstore/internal/cliout"
)

const clientExitHelp = `Environment: ARTIFACTSTORE_URL is the server URL when --server is not
given (else http://127.0.0.1:8080); ARTIFACTSTORE_TOKEN is the access token
sent as "Authorization: Bearer"; ARTIFACTSTORE_TOKEN_FILE names a file
holding the token, read when ARTIFACTSTORE_TOKEN is unset. Flags may come
before or after the arguments.
Exit codes: 0 success; 1 the operation failed (server error, digest
mismatch, not found, token refused); 2 bad usage (unknown command or flag,
missing argument or required flag).`

func serverFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "server", Usage: "server `URL` (default $ARTIFACTSTORE_URL, else http://127.0.0.1:8080)"},
		jsonFlag,
	}
}

// clientFrom builds a client from --server / ARTIFACTSTORE_URL and
// ARTIFACTSTORE_TOKEN or ARTIFACTSTORE_TOKEN_FILE.
func clientFrom(c *cli.Context, env Env) (*client.Client, error) {
	lookup := func(k string) string {
		for _, kv := range env.Environ {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	url := c.String("server")
	if url == "" {
		url = lookup("ARTIFACTSTORE_URL")
	}
	if url == "" {
		url = "http://127.0.0.1:8080"
	}
	cl := client.New(url)
	cl.Token = lookup("ARTIFACTSTORE_TOKEN")
	if f := lookup("ARTIFACTSTORE_TOKEN_FILE"); cl.Token == "" && f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("token file: %w", err)
		}
		cl.Token = strings.TrimSpace(string(b))
	}
	return cl, nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

func newBar(env Env, total int64, desc string) *progressbar.ProgressBar {
	if !isTerminal(env.Stderr) || total <= 0 {
		return nil
	}
	return progressbar.NewOptions64(total, progressbar.OptionSetWriter(env.Stderr), progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(desc), progressbar.OptionClearOnFinish(), progressbar.OptionThrottle(100*time.Millisecond))
}

func clientCommands(env Env) []*cli.Command {
	return []*cli.Command{
		{
			Name:        "push",
			Usage:       "publish a package: push NAME VERSION FILE|DIR... (content the server has is skipped)",
			ArgsUsage:   "NAME VERSION FILE|DIR...",
			Description: "A FILE is published under its base name; the files under a DIR under their paths relative to it.\n" + clientExitHelp,
			Flags: append(serverFlags(),
				&cli.StringFlag{Name: "producer", Required: true, Usage: "producer `ID`"},
				&cli.StringFlag{Name: "retention-class", Required: true, Usage: "retention `CLASS`"},
				&cli.StringSliceFlag{Name: "label", Usage: "`key=value` label (repeatable)"},
				&cli.IntFlag{Name: "parallel", Value: 4, Usage: "files uploaded at once"},
				&cli.IntFlag{Name: "retries", Value: 5, Usage: "attempts per request on transient failures"},
			),
			Action: func(c *cli.Context) error { return runPush(c, env) },
		},
		{
			Name:        "pull",
			Usage:       "download a package: pull NAME@VERSION [--to DIR] [--file PATH]",
			ArgsUsage:   "NAME@VERSION",
			Description: "Every file is verified against its digest while written, kept under a .partial name until it matches, and resumed with a Range request after an interruption; a resumed file that then fails its digest is fetched again from byte 0 (a mismatch without a resume is final).\n" + clientExitHelp,
			Flags: append(serverFlags(),
				&cli.StringFlag{Name: "to", Value: ".", Usage: "target `DIR`"},
				&cli.StringSliceFlag{Name: "file", Usage: "only this package `PATH` (repeatable)"},
				&cli.IntFlag{Name: "retries", Value: 5, Usage: "attempts per file on transient failures (each resumes)"},
			),
			Action: func(c *cli.Context) error { return runPull(c, env) },
		},
		{
			Name:        "ls",
			Usage:       "list packages",
			Description: clientExitHelp,
			Flags: append(serverFlags(),
				&cli.StringFlag{Name: "name", Usage: "only packages named `NAME`"},
				&cli.StringFlag{Name: "producer", Usage: "only packages published by producer `ID`"},
				&cli.StringFlag{Name: "retention-class", Usage: "only packages of retention `CLASS`"},
				&cli.StringSliceFlag{Name: "label", Usage: "`key=value` filter (repeatable)"},
				&cli.IntFlag{Name: "limit", Value: 100, Usage: "packages per page (1-1000)"},
				&cli.BoolFlag{Name: "all", Usage: "follow cursors through every page"},
			),
			Action: func(c *cli.Context) error { return runLs(c, env) },
		},
		{
			Name:        "show",
			Usage:       "show a package: files, sizes, digests and storage locations",
			ArgsUsage:   "NAME@VERSION",
			Description: clientExitHelp,
			Flags:       serverFlags(),
			Action: func(c *cli.Context) error {
				cl, name, version, err := clientAndRef(c, env)
				if err != nil {
					return err
				}
				p, err := cl.GetPackage(c.Context, name, version)
				if err != nil {
					return apiFailed(cl, err)
				}
				if c.Bool("json") {
					return cliout.JSON(env.Stdout, p)
				}
				fmt.Fprintf(env.Stdout, "%s@%s  producer=%s  retention_class=%s  created=%s\n", p.Name, p.Version, p.Producer, p.RetentionClass, p.CreatedAt.Format(time.RFC3339))
				for _, k := range sortedKeys(p.Labels) {
					fmt.Fprintf(env.Stdout, "label %s=%s\n", k, p.Labels[k])
				}
				tw := cliout.Table(env.Stdout)
				fmt.Fprintln(tw, "PATH\tSIZE\tSHA256\tLOCATIONS")
				for _, f := range p.Files {
					var locs []string
					for _, l := range f.Locations {
						locs = append(locs, l.Backend+":"+l.Status)
					}
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\n", f.Path, f.Size, f.SHA256, strings.Join(locs, ","))
				}
				return tw.Flush()
			},
		},
		{
			Name:        "events",
			Usage:       "print registry events after a sequence number; --follow streams new ones as they commit",
			Description: clientExitHelp,
			Flags: append(serverFlags(),
				&cli.Uint64Flag{Name: "after", Usage: "print events with a sequence number above `SEQ`"},
				&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new events as they commit (live stream)"},
				&cli.DurationFlag{Name: "interval", Value: time.Second, Usage: "with --follow: wait before reconnecting after the stream broke off"},
			),
			Action: func(c *cli.Context) error { return runEvents(c, env) },
		},
	}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func clientAndRef(c *cli.Context, env Env) (*client.Client, string, string, error) {
	if c.NArg() != 1 {
		return nil, "", "", cli.Exit("want exactly one NAME@VERSION", 2)
	}
	name, version, ok := strings.Cut(c.Args().First(), "@")
	if !ok || name == "" || version == "" {
		return nil, "", "", cli.Exit(fmt.Sprintf("%q is not NAME@VERSION", c.Args().First()), 2)
	}
	cl, err := clientFrom(c, env)
	if err != nil {
		return nil, "", "", cli.Exit(err, 2)
	}
	return cl, name, version, nil
}

// localFile is a file to push.
type localFile struct {
	src  string
	path string
	size int64
	sha  string
}

func collectFiles(args []string) ([]*localFile, error) {
	var out []*localFile
	seen := map[string]string{}
	add := func(src, path string, size int64) error {
		if prev, dup := seen[path]; dup {
			return fmt.Errorf("%s and %s would both be published as %q", prev, src, path)
		}
		seen[path] = src
		out = append(out, &localFile{src: src, path: path, size: size})
		return nil
	}
	for _, arg := range args {
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			if err := add(arg, filepath.Base(arg), fi.Size()); err != nil {
				return nil, err
			}
			continue
		}
		err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			if !d.Type().IsRegular() {
				return fmt.Errorf("%s is not a regular file (symlinks and devices are not published)", p)
			}
			rel, err := filepath.Rel(arg, p)
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			return add(p, filepath.ToSlash(rel), info.Size())
		})
		if err != nil {
			return nil, err
		}
	}
	if len(out) == 0 {
		return nil, errors.New("nothing to push")
	}
	return out, nil
}

func hashFiles(ctx context.Context, files []*localFile, parallel int) error {
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	errs := make([]error, len(files))
	for i, f := range files {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fh, err := os.Open(f.src)
			if err != nil {
				errs[i] = err
				return
			}
			defer fh.Close()
			h := sha256.New()
			n, err := io.CopyBuffer(h, fh, make([]byte, 1<<20))
			if err == nil && n != f.size {
				err = fmt.Errorf("%s changed size while hashing", f.src)
			}
			f.sha, errs[i] = hex.EncodeToString(h.Sum(nil)), err
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

type pushResult struct {
	Name          string          `json:"name"`
	Version       string          `json:"version"`
	Files         int             `json:"files"`
	TotalBytes    int64           `json:"total_bytes"`
	UploadedBytes int64           `json:"uploaded_bytes"`
	SkippedBytes  int64           `json:"skipped_bytes"`
	Existed       bool            `json:"existed"`
	Backend       string          `json:"backend"`
	Package       *client.Package `json:"package,omitempty"`
}

func runPush(c *cli.Context, env Env) error {
	if c.NArg() < 3 {
		return cli.Exit("usage: push NAME VERSION FILE|DIR...", 2)
	}
	cl, err := clientFrom(c, env)
	if err != nil {
		return cli.Exit(err, 2)
	}
	args := c.Args().Slice()
	files, err := collectFiles(args[2:])
	if err != nil {
		return cli.Exit(err, 2)
	}
	labels := map[string]string{}
	for _, l := range c.StringSlice("label") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return cli.Exit(fmt.Sprintf("--label %q is not key=value", l), 2)
		}
		labels[k] = v
	}
	parallel := max(1, c.Int("parallel"))
	retries := max(1, c.Int("retries"))
	ctx := c.Context
	if err := hashFiles(ctx, files, parallel); err != nil {
		return cli.Exit(err, 1)
	}
	m := client.Manifest{Name: args[0], Version: args[1], Producer: c.String("producer"), RetentionClass: c.String("retention-class"), Labels: labels}
	res := pushResult{Name: m.Name, Version: m.Version, Files: len(files)}
	bySHA := map[string]*localFile{}
	for _, f := range files {
		m.Files = append(m.Files, client.File{Path: f.path, Size: f.size, SHA256: f.sha})
		res.TotalBytes += f.size
		bySHA[f.sha] = f
	}
	var br *client.BeginResponse
	if err := client.Retry(ctx, retries, func() (err error) { br, err = cl.Begin(ctx, m); return err }); err != nil {
		return apiFailed(cl, err)
	}
	res.Backend, res.SkippedBytes = br.Backend, br.SkippedBytes
	if br.Status == "exists" {
		res.Existed, res.Package, res.SkippedBytes = true, br.Package, res.TotalBytes
		return pushDone(c, env, res)
	}
	var need int64
	for _, n := range br.Needed {
		need += n.Size
	}
	bar := newBar(env, need, "push "+m.Name+"@"+m.Version)
	var mu sync.Mutex
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	var errs []error
	for _, n := range br.Needed {
		f := bySHA[n.SHA256]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := client.Retry(ctx, retries, func() error {
				fh, err := os.Open(f.src)
				if err != nil {
					return err
				}
				defer fh.Close()
				var body io.Reader = fh
				if bar != nil {
					body = io.TeeReader(fh, progressbarWriter{bar})
				}
				return cl.Upload(ctx, br.UploadID, f.sha, f.size, body)
			})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.path, err))
				return
			}
			res.UploadedBytes += f.size
			if bar == nil && !c.Bool("json") {
				fmt.Fprintf(env.Stderr, "uploaded %s (%d bytes)\n", f.path, f.size)
			}
		}()
	}
	wg.Wait()
	if bar != nil {
		bar.Finish()
	}
	if len(errs) > 0 {
		cl.Abort(context.WithoutCancel(ctx), br.UploadID)
		return apiFailed(cl, errors.Join(errs...))
	}
	var p *client.Package
	err = client.Retry(ctx, retries, func() (err error) { p, _, err = cl.Commit(ctx, br.UploadID); return err })
	if client.Code(err) == "not_found" {
		// A retried commit whose first attempt succeeded: the package is there.
		if got, gerr := cl.GetPackage(ctx, m.Name, m.Version); gerr == nil {
			p, err = got, nil
		}
	}
	if err != nil {
		return apiFailed(cl, err)
	}
	res.Package = p
	return pushDone(c, env, res)
}

type progressbarWriter struct{ b *progressbar.ProgressBar }

func (p progressbarWriter) Write(b []byte) (int, error) { p.b.Add(len(b)); return len(b), nil }

func pushDone(c *cli.Context, env Env, res pushResult) error {
	if c.Bool("json") {
		return cliout.JSON(env.Stdout, res)
	}
	if res.Existed {
		fmt.Fprintf(env.Stdout, "%s@%s is already published with identical content (%d files, %d bytes); nothing uploaded\n", res.Name, res.Version, res.Files, res.TotalBytes)
		return nil
	}
	fmt.Fprintf(env.Stdout, "pushed %s@%s to %s: %d files, %d bytes; uploaded %d bytes, skipped %d bytes already stored\n",
		res.Name, res.Version, res.Backend, res.Files, res.TotalBytes, res.UploadedBytes, res.SkippedBytes)
	return nil
}

type pullResult struct {
	Name    string                  `json:"name"`
	Version string                  `json:"version"`
	Dir     string                  `json:"dir"`
	Files   []client.DownloadResult `json:"files"`
	Bytes   int64                   `json:"bytes_downloaded"`
}

func runPull(c *cli.Context, env Env) error {
	cl, name, version, err := clientAndRef(c, env)
	if err != nil {
		return err
	}
	ctx := c.Context
	var p *client.Package
	if err := client.Retry(ctx, max(1, c.Int("retries")), func() (err error) { p, err = cl.GetPackage(ctx, name, version); return err }); err != nil {
		return apiFailed(cl, err)
	}
	dir, err := filepath.Abs(c.String("to"))
	if err != nil {
		return cli.Exit(err, 2)
	}
	want := map[string]bool{}
	for _, f := range c.StringSlice("file") {
		want[f] = true
	}
	// Check every path before writing anything.
	var files []client.PackageFile
	dests := map[string]string{}
	var total int64
	for _, f := range p.Files {
		if len(want) > 0 && !want[f.Path] {
			continue
		}
		dest, err := client.SafeJoin(dir, f.Path)
		if err != nil {
			return cli.Exit(fmt.Errorf("refusing to pull %s@%s: the manifest names %w outside %s", name, version, err, dir), 1)
		}
		files = append(files, f)
		dests[f.Path] = dest
		total += f.Size
		delete(want, f.Path)
	}
	if len(want) > 0 {
		return cli.Exit(fmt.Sprintf("%s@%s has no file %s", name, version, strings.Join(sortedKeys(boolKeys(want)), ", ")), 1)
	}
	res := pullResult{Name: name, Version: version, Dir: dir}
	bar := newBar(env, total, "pull "+name+"@"+version)
	var progress func(int64)
	if bar != nil {
		progress = func(n int64) { bar.Add64(n) }
	}
	for _, f := range files {
		r, err := cl.Download(ctx, name, version, f, dests[f.Path], max(1, c.Int("retries")), progress)
		res.Bytes += r.Bytes
		if err != nil {
			return cli.Exit(fmt.Errorf("pull %s: %w", f.Path, err), 1)
		}
		res.Files = append(res.Files, r)
		if bar == nil && !c.Bool("json") {
			note := ""
			if r.Restarts > 0 {
				note = " (started over after a resumed download failed its digest)"
			}
			if r.ResumedFrom > 0 {
				note = fmt.Sprintf(" (resumed at byte %d)", r.ResumedFrom)
			}
			if r.AlreadyThere {
				note = " (already present, digest matches)"
			}
			fmt.Fprintf(env.Stderr, "verified %s%s\n", f.Path, note)
		}
	}
	if bar != nil {
		bar.Finish()
	}
	if c.Bool("json") {
		return cliout.JSON(env.Stdout, res)
	}
	fmt.Fprintf(env.Stdout, "pulled %s@%s into %s: %d files verified, %d bytes downloaded\n", name, version, dir, len(res.Files), res.Bytes)
	return nil
}

func boolKeys(m map[string]bool) map[string]string {
	out := map[string]string{}
	for k := range m {
		out[k] = ""
	}
	return out
}

func runLs(c *cli.Context, env Env) error {
	cl, err := clientFrom(c, env)
	if err != nil {
		return cli.Exit(err, 2)
	}
	o := client.ListOptions{Name: c.String("name"), Producer: c.String("producer"), RetentionClass: c.String("retention-class"), Limit: c.Int("limit"), Labels: map[string]string{}}
	for _, l := range c.StringSlice("label") {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return cli.Exit(fmt.Sprintf("--label %q is not key=value", l), 2)
		}
		o.Labels[k] = v
	}
	var all []client.Package
	for {
		ps, next, err := cl.List(c.Context, o)
		if err != nil {
			return apiFailed(cl, err)
		}
		all = append(all, ps...)
		if next == "" || !c.Bool("all") {
			break
		}
		o.Cursor = next
	}
	if c.Bool("json") {
		if all == nil {
			all = []client.Package{}
		}
		return cliout.JSON(env.Stdout, all)
	}
	tw := cliout.Table(env.Stdout)
	fmt.Fprintln(tw, "NAME\tVERSION\tPRODUCER\tRETENTION\tFILES\tBYTES\tCREATED")
	for _, p := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", p.Name, p.Version, p.Producer, p.RetentionClass, p.FileCount, p.TotalBytes, p.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func runEvents(c *cli.Context, env Env) error {
	cl, err := clientFrom(c, env)
	if err != nil {
		return cli.Exit(err, 2)
	}
	printEvent := func(e client.Event) error {
		if c.Bool("json") {
			b, _ := json.Marshal(e)
			_, err := fmt.Fprintln(env.Stdout, string(b))
			return err
		}
		_, err := fmt.Fprintf(env.Stdout, "%d\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339), e.Type, e.Subject)
		return err
	}
	after := c.Uint64("after")
	if c.Bool("follow") {
		// The live stream (Server-Sent Events) sends the backlog, then each
		// event as it commits; it resumes from the last printed event.
		err := cl.StreamEvents(c.Context, after, client.StreamOptions{
			Reconnect:   c.Duration("interval"),
			OnReconnect: func(err error) { fmt.Fprintf(env.Stderr, "event stream interrupted (%v); reconnecting\n", err) },
		}, printEvent)
		if err != nil {
			return cli.Exit(err, 1)
		}
		return nil
	}
	for {
		evs, err := cl.Events(c.Context, after, 1000)
		if err != nil {
			if c.Context.Err() != nil {
				return nil
			}
			return apiFailed(cl, err)
		}
		for _, e := range evs {
			if err := printEvent(e); err != nil {
				return err
			}
			after = e.Seq
		}
		if len(evs) < 1000 {
			return nil
		}
	}
}
