package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"lens/engine/secret"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
	"golang.org/x/term"

	"lens/builtins"
	"lens/engine/data"
	"lens/engine/device"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/sweep"
	"lens/engine/tokenize"
	"lens/engine/train"
	"lens/kv"
	"lens/runtime"
)

func openStore(dir string, readOnly bool) (*kv.Store, error) {
	return openStoreWith(dir, kv.Options{ReadOnly: readOnly})
}

// openStoreWith opens the store with opts, adding the command line and the
// redactor.
func openStoreWith(dir string, opts kv.Options) (*kv.Store, error) {
	opts.Command, opts.Redact = "lens "+strings.Join(os.Args[1:], " "), redactor().Redact
	return kv.Open(dir, opts)
}

// interruptible returns a context cancelled by the first SIGINT or
// SIGTERM; a second one exits at once.
func interruptible(stderr io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		select {
		case <-sigs:
			fmt.Fprintln(stderr, "\nlens: interrupted; saving a checkpoint (interrupt again to quit at once)")
			cancel()
		case <-ctx.Done():
			return
		}
		<-sigs
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(sigs); cancel() }
}

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", "FILE.star [-- KEY=VALUE ...]", "Run an experiment script; KEY=VALUE pairs after -- reach it as lens.args", stderr)
	store := storeFlag(fs)
	resume := fs.String("resume", "", "resume RUN from its last checkpoint instead of running a script")
	dev := fs.String("device", "", `default device for lens.train: "auto", "cpu" or "cuda" (cuda needs a lens built with -tags lenscuda and a GPU)`)
	backend := fs.String("backend", "", "default backend of the script's sweeps (run_sweep, successive_halving): "+strings.Join(sweep.Backends, ", "))
	var allow multiFlag
	fs.Var(&allow, "allow-read", "a folder outside the workspace that scripts may read (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *backend != "" {
		if err := sweep.CheckBackend(*backend); err != nil {
			return usagef("--%v", err) // --backend "x": want ...
		}
	}
	var file string
	scriptArgs := map[string]string{}
	for i, a := range pos {
		if a == "--" {
			for _, kv := range pos[i+1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok || k == "" {
					return usagef("script argument %q is not KEY=VALUE", kv)
				}
				scriptArgs[k] = v
			}
			break
		}
		if file != "" {
			return usagef("one script at a time (got %s and %s); script arguments go after --", file, a)
		}
		file = a
	}
	if file == "" && *resume == "" {
		return usagef("no script given")
	}
	ctx, stop := interruptible(stderr)
	defer stop()
	prog := newProgress(stderr)
	if *resume != "" {
		st, err := openStore(*store, false)
		if err != nil {
			return err
		}
		defer st.Close()
		meta, err := st.FindRun(*resume)
		if err != nil {
			return err
		}
		if *dev != "" {
			if _, note, err := device.Resolve(*dev); err != nil {
				return usagef("--device: %v", err)
			} else if note != "" {
				fmt.Fprintln(stderr, note)
			}
		}
		out, err := runs.Resume(ctx, st, meta.ID, runs.Options{Progress: prog.update, Device: *dev})
		prog.done()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "run %s: %s after %d steps\n", out.ID, out.Status, out.Steps)
		if out.Status == kv.StatusCancelled {
			return errReported
		}
		return nil
	}
	src, err := os.ReadFile(file)
	if err != nil {
		return usagef("%v", err)
	}
	sum := sha256.Sum256(src)
	abs, _ := filepath.Abs(file)
	wd, _ := os.Getwd()
	wd = workspaceOf(abs, wd)
	// The store opens when the script first touches it: one that never
	// does starts in the same time whatever the store holds. It opens
	// read-only until the script's first write (lens.train...), so a
	// script that only reads (lens.runs, analyzers) creates no file and
	// waits for no compaction.
	var st *kv.Store
	openOnce := func() (*kv.Store, error) {
		var err error
		st, err = openStoreWith(*store, kv.Options{WriteOnDemand: true})
		if err != nil {
			return nil, err
		}
		if le := st.Holder(); le != nil {
			// Another lens writes the store: a script that only reads runs
			// on a snapshot; one that trains fails at its first write,
			// naming it.
			fmt.Fprintf(stderr, "lens: %v; this script reads a snapshot of it and cannot write while that process holds it\n", le)
		}
		return st, err
	}
	defer func() {
		if st != nil {
			st.Close()
		}
	}()
	if _, err := os.Stat(*store); errors.Is(err, iofs.ErrNotExist) {
		// A first run creates the store (cheap when empty), as it always
		// has, so that `lens runs` after it finds one.
		if _, err := openOnce(); err != nil {
			return err
		}
	}
	env := withIntegrations(&builtins.Env{Store: st, OpenStore: openOnce, Args: scriptArgs, Script: abs, ScriptHash: hex.EncodeToString(sum[:8]),
		Out: stdout, Progress: prog.update, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Workspace: wd, AllowRead: allow, Device: *dev, SweepBackend: *backend})
	if _, _, err := device.Resolve(*dev); err != nil {
		return usagef("--device: %v", err)
	}
	host := &runtime.Host{Root: wd, Predecl: builtins.Modules(scriptArgs), Out: &progressWriter{w: stdout, p: prog}, Setup: env.Attach, Docs: apiDocs}
	env.Out = host.Out
	_, err = host.Exec(ctx, file)
	prog.done()
	if err != nil {
		fmt.Fprintln(stderr, runtime.FormatError(err))
		return errReported
	}
	return nil
}

// workspaceOf is the folder a script's loads and reads are confined to:
// the current directory when the script lies in it (so `lens run
// scripts/x.star` may read files anywhere under here, as before), else the
// script's own directory, since a script named on the command line is the
// user's intent. Relative paths in a script still resolve from the current
// directory.
func workspaceOf(script, wd string) string {
	dir := filepath.Dir(script)
	real := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
		return p
	}
	if rel, err := filepath.Rel(real(wd), real(dir)); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return wd
	}
	return dir
}

func cmdRepl(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("repl", "", "Interactive Starlark session over the lens builtins and the store; exit() or Ctrl-D ends it", stderr)
	store := storeFlag(fs)
	history := fs.String("history", "", "history file (default STORE/repl_history)")
	var allow multiFlag
	fs.Var(&allow, "allow-read", "a folder outside the workspace that scripts may read (repeatable)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	st, err := openStore(*store, false)
	if err != nil {
		return err
	}
	defer st.Close()
	if *history == "" {
		*history = filepath.Join(*store, "repl_history")
	}
	prog := newProgress(stderr)
	wd, _ := os.Getwd()
	env := withIntegrations(&builtins.Env{Store: st, Args: map[string]string{}, Out: stdout, Progress: prog.update, Workspace: wd, AllowRead: allow})
	host := &runtime.Host{Root: wd, Predecl: builtins.Modules(nil), Out: stdout, Setup: env.Attach, Docs: apiDocs}
	fmt.Fprint(stdout, replBanner(host.Predecl))
	return host.REPL(context.Background(), io.NopCloser(os.Stdin), stdout, *history)
}

func fmtLoss(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.4f", *p)
}

func table(w io.Writer, header []string, rows [][]string) {
	tw := tablewriter.NewTable(w, tablewriter.WithHeaderAutoFormat(tw.Off))
	tw.Header(header)
	tw.Bulk(rows)
	tw.Render()
}

func cmdRuns(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("runs", "", "List stored runs: id, name, status, steps, final loss, created", stderr)
	store := storeFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	// Listing needs no metrics: from a store a training run holds, ask it
	// for the runs alone.
	st, err := openStoreWith(*store, kv.Options{ReadOnly: true, RunsOnly: true})
	if err != nil {
		return err
	}
	defer st.Close()
	if *asJSON {
		// Full records in creation order, each written as it is read, so
		// the first line leaves at once however many runs follow.
		return writeRunsJSON(stdout, st.EachRun)
	}
	list, err := st.ListSummaries()
	if err != nil {
		return err
	}
	var rows [][]string
	for _, m := range list {
		rows = append(rows, []string{m.ID, m.Name, m.Status, fmt.Sprint(m.Steps), fmtLoss(m.FinalLoss), m.Created.Local().Format("2006-01-02 15:04")})
	}
	table(stdout, []string{"id", "name", "status", "steps", "final loss", "created"}, rows)
	return nil
}

// writeRunsJSON writes the records each gives (kv.Store.EachRun) as one
// JSON array with a run a line ("[{...},\n{...},\n{...}]\n"; no runs is
// "null", as json.Encoder writes an empty listing), flushing once the
// first line is complete so that `lens runs --json | head -1` gets the
// first run without waiting for the rest. Each record's MarshalJSON is written as it is: json.Encoder
// would check and compact it again, a second pass over every config.
func writeRunsJSON(w io.Writer, each func(func(kv.RunMeta) error) error) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	n := 0
	err := each(func(m kv.RunMeta) error {
		b, err := m.MarshalJSON()
		if err != nil {
			return fmt.Errorf("run %s: %w", m.ID, err)
		}
		if n == 0 {
			bw.WriteByte('[')
		} else {
			bw.WriteString(",\n")
		}
		if n == 1 { // the first line is complete
			if err := bw.Flush(); err != nil {
				return err
			}
		}
		bw.Write(b)
		n++
		return nil
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return json.NewEncoder(w).Encode([]kv.RunMeta(nil))
	}
	bw.WriteString("]\n")
	return bw.Flush()
}

func cmdShow(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("show", "RUN", "Show a run: record, config, metric summary, checkpoints and events", stderr)
	store := storeFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one run id or name")
	}
	st, err := openStore(*store, true)
	if err != nil {
		return err
	}
	defer st.Close()
	m, err := st.FindRun(pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "run %s  %q\nstatus   %s", m.ID, m.Name, m.Status)
	if m.Reason != "" {
		fmt.Fprintf(stdout, " (%s)", m.Reason)
	}
	fmt.Fprintf(stdout, "\nsteps    %d\nfinal    %s\ncreated  %s\nupdated  %s\nscript   %s\n", m.Steps, fmtLoss(m.FinalLoss),
		m.Created.Local().Format(time.DateTime), m.Updated.Local().Format(time.DateTime), m.Script)
	if len(m.Tags) > 0 {
		fmt.Fprintf(stdout, "tags     %s\n", strings.Join(m.Tags, ", "))
	}
	var cfg map[string]any
	if json.Unmarshal(m.Config, &cfg) == nil {
		show := map[string]any{"train": cfg["train"], "lora": cfg["lora"], "data": cfg["data"], "evals": cfg["evals"], "base": cfg["base"]}
		if cfg["lora"] != nil {
			show["lora_seed"] = cfg["lora_seed"] // the adapter's initialisation; full training has none
		}
		for _, k := range []string{"init", "checkpoint_every", "keep_last", "device", "collect", "probe_batch"} {
			if v, ok := cfg[k]; ok {
				show[k] = v
			}
		}
		b, _ := json.MarshalIndent(show, "", "  ")
		fmt.Fprintf(stdout, "config   %s\n", b)
	}
	names, err := st.MetricNames(m.ID)
	if err != nil {
		return err
	}
	var rows [][]string
	for _, n := range names {
		pts, err := st.ReadMetric(m.ID, n)
		if err != nil {
			return err
		}
		if len(pts) == 0 {
			continue
		}
		lo, hi := pts[0].Value, pts[0].Value
		for _, p := range pts {
			lo, hi = min(lo, p.Value), max(hi, p.Value)
		}
		rows = append(rows, []string{n, fmt.Sprint(len(pts)), fmt.Sprintf("%d: %.4g", pts[0].Step, pts[0].Value),
			fmt.Sprintf("%d: %.4g", pts[len(pts)-1].Step, pts[len(pts)-1].Value), fmt.Sprintf("%.4g", lo), fmt.Sprintf("%.4g", hi)})
	}
	fmt.Fprintln(stdout, "\nmetrics")
	table(stdout, []string{"metric", "points", "first", "last", "min", "max"}, rows)
	cps, err := st.Checkpoints(m.ID)
	if err != nil {
		return err
	}
	rows = nil
	for _, c := range cps {
		var ev []string
		for _, k := range slices.Sorted(maps.Keys(c.EvalLoss)) {
			ev = append(ev, fmt.Sprintf("%s %.4f", k, c.EvalLoss[k]))
		}
		rows = append(rows, []string{fmt.Sprint(c.Step), c.Time.Local().Format(time.DateTime), fmt.Sprint(len(c.Tensors)), strings.Join(ev, ", ")})
	}
	fmt.Fprintln(stdout, "\ncheckpoints")
	table(stdout, []string{"step", "time", "tensors", "eval loss"}, rows)
	if err := showCollected(stdout, st, m.ID); err != nil {
		return err
	}
	events, err := st.Events(m.ID)
	if err != nil {
		return err
	}
	if len(events) > 0 {
		rows = nil
		for _, e := range events {
			rows = append(rows, []string{fmt.Sprint(e.Step), e.Kind, e.Message})
		}
		fmt.Fprintln(stdout, "\nevents")
		table(stdout, []string{"step", "kind", "message"}, rows)
	}
	return nil
}

// showCollected prints what the run's collectors recorded: at which steps
// and how many records a step (counted at the last step, so that a large
// tensor collection is not read whole), or nothing when none did.
func showCollected(w io.Writer, st *kv.Store, id string) error {
	names, err := st.Collectors(id)
	if err != nil || len(names) == 0 {
		return err
	}
	var rows [][]string
	for _, c := range names {
		steps, err := st.CollectedSteps(id, c)
		if err != nil {
			return err
		}
		if len(steps) == 0 {
			continue
		}
		last, err := st.ReadCollectedStep(id, c, steps[len(steps)-1])
		if err != nil {
			return err
		}
		tensors := 0
		for _, r := range last {
			if r.Kind == kv.KindTensor {
				tensors++
			}
		}
		rows = append(rows, []string{c, fmt.Sprint(len(steps)), fmt.Sprint(steps[0]), fmt.Sprint(steps[len(steps)-1]),
			fmt.Sprint(len(last)), fmt.Sprint(tensors)})
	}
	fmt.Fprintln(w, "\ncollected (run.records(collector, step=) reads them)")
	table(w, []string{"collector", "steps", "first", "last", "records/step", "tensors/step"}, rows)
	return nil
}

func cmdRm(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rm", "RUN...", "Delete runs (record, metrics, checkpoints, collected data)", stderr)
	store := storeFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want at least one run")
	}
	st, err := openStore(*store, false)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, r := range pos {
		m, err := st.FindRun(r)
		if err != nil {
			return err
		}
		if err := st.DeleteRun(m.ID); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %s (%s)\n", m.ID, m.Name)
	}
	// A deleted run's values stay in the value log until a GC pass.
	_, err = st.GC()
	return err
}

func cmdEval(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("eval", "--model DIR [--adapter DIR] --text FILE [--seq-len N] [--json]",
		"Mean next-token loss (nats per token) over consecutive non-overlapping windows of FILE, tokenized with the model directory's tokenizer.json (bytes when it has none)", stderr)
	modelDir := fs.String("model", "", "HF model directory (config.json + model.safetensors)")
	adapterDir := fs.String("adapter", "", "PEFT adapter directory")
	text := fs.String("text", "", "text file to score")
	seqLen := fs.Int("seq-len", 0, "window length in tokens (default the model's max_position_embeddings)")
	batch := fs.Int("batch", 8, "windows per forward pass")
	asJSON := fs.Bool("json", false, `print {"loss": ..., "tokens": ..., "windows": ...}`)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *modelDir == "" || *text == "" {
		return usagef("--model and --text are required")
	}
	if *seqLen < 0 || *batch <= 0 {
		return usagef("--seq-len must not be negative and --batch must be positive")
	}
	m, err := model.Load(*modelDir)
	if err != nil {
		return err
	}
	var ad *lora.Adapter
	if *adapterDir != "" {
		if ad, err = lora.Load(*adapterDir, m); err != nil {
			return err
		}
	}
	tok, err := tokenize.Load(*modelDir) // tokenizer.json when the directory has one, else bytes
	if err != nil {
		return err
	}
	c, err := data.Text(tok, *text)
	if err != nil {
		return err
	}
	n := *seqLen
	if n == 0 {
		n = m.Config.MaxPositionEmbeddings
	}
	r, err := train.Evaluate(m, ad, c.Tokens, n, *batch)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(r)
	}
	fmt.Fprintf(stdout, "loss %.6f nats/token over %d tokens in %d windows of %d\n", r.Loss, r.Tokens, r.Windows, n)
	return nil
}

func cmdExport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("export", "RUN --out DIR [--step N] [--with-base] | RUN --tensorboard DIR",
		"Write a run's adapter (latest or given checkpoint) as a PEFT directory; with --with-base, DIR/adapter and DIR/base", stderr)
	store := storeFlag(fs)
	out := fs.String("out", "", "output directory")
	step := fs.Int("step", -1, "checkpoint step (default the latest)")
	withBase := fs.Bool("with-base", false, "also write the base model as an HF directory")
	tbDir := fs.String("tensorboard", "", "instead, write the run's metrics, collected tensors and checkpoints as TensorBoard event files in `DIR`")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *tbDir != "" {
		return exportTensorBoard(*store, pos, *tbDir, stdout)
	}
	if len(pos) != 1 || *out == "" {
		return usagef("want one run and --out DIR")
	}
	st, err := openStore(*store, true)
	if err != nil {
		return err
	}
	defer st.Close()
	meta, err := st.FindRun(pos[0])
	if err != nil {
		return err
	}
	m, ad, cm, err := runs.Weights(st, meta.ID, *step)
	if err != nil {
		return err
	}
	adDir, baseDir := *out, ""
	if *withBase {
		adDir, baseDir = filepath.Join(*out, "adapter"), filepath.Join(*out, "base")
	}
	if ad == nil {
		// A full run has no adapter: its trained weights are the model.
		if err := m.Save(*out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote the model of full run %s at step %d to %s\n", meta.ID, cm.Step, *out)
		return nil
	}
	if err := ad.Save(adDir); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote the adapter of run %s at step %d to %s\n", meta.ID, cm.Step, adDir)
	if baseDir != "" {
		if err := m.Save(baseDir); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote the base model to %s\n", baseDir)
	}
	return nil
}

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "", "Print the lens version", stderr)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "lens %s\n", runs.Version)
	return nil
}

// progress renders training progress: a live line on a terminal, a log
// line every few seconds otherwise.
type progress struct {
	w        io.Writer
	tty      bool
	last     time.Time
	lineOpen bool
}

func newProgress(w io.Writer) *progress {
	tty := false
	inner := w
	if sw, ok := w.(secret.Writer); ok {
		inner = sw.W
	}
	if f, ok := inner.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progress{w: w, tty: tty}
}

func (p *progress) update(u runs.Progress) {
	if u.Eval != nil {
		p.clear()
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(u.Eval)) {
			parts = append(parts, fmt.Sprintf("%s %.4f", k, u.Eval[k]))
		}
		fmt.Fprintf(p.w, "%s step %d/%d eval: %s\n", u.Name, u.Step, u.Steps, strings.Join(parts, ", "))
		return
	}
	line := fmt.Sprintf("%s step %d/%d loss %.4f %.0f tok/s ETA %s", u.Name, u.Step, u.Steps, u.Loss, u.TokensPerSec, u.ETA.Round(time.Second))
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.lineOpen = true
		return
	}
	if time.Since(p.last) >= 10*time.Second || u.Step == u.Steps || u.Step == 1 {
		fmt.Fprintln(p.w, line)
		p.last = time.Now()
	}
}

func (p *progress) clear() {
	if p.lineOpen {
		fmt.Fprint(p.w, "\r\033[K")
		p.lineOpen = false
	}
}

func (p *progress) done() { p.clear() }

// progressWriter clears the live progress line before script output.
type progressWriter struct {
	w io.Writer
	p *progress
}

func (pw *progressWriter) Write(b []byte) (int, error) {
	pw.p.clear()
	return pw.w.Write(b)
}

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
