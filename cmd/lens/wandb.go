package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"lens/engine/wandb"
	"lens/kv"
)

const wandbUsage = `Usage:
  lens wandb sync [DIR] [--project P] [--entity E]
      Upload offline W&B folders (default: <store>/wandb), going on where an
      earlier sync stopped. A folder whose live upload gave up is finished
      from the store once its run has ended.
  lens wandb upload RUN --project P [--entity E]
      Upload a stored run (trained with or without W&B), skipping the
      history lines the server already has.

The API key comes from WANDB_API_KEY, the server from WANDB_BASE_URL
(default https://api.wandb.ai). Every subcommand takes --store DIR.
`

func cmdWandb(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("want a subcommand: sync or upload (lens help wandb)")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, wandbUsage)
		return flag.ErrHelp
	case "sync":
		return cmdWandbSync(args[1:], stdout, stderr)
	case "upload":
		return cmdWandbUpload(args[1:], stdout, stderr)
	}
	return usagef("unknown subcommand %q: want sync or upload", args[0])
}

// wandbOpts reads the key and server from the environment.
func wandbOpts(stderr io.Writer) (wandb.Options, error) {
	o := wandb.Options{Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}.FromEnv(os.Getenv)
	if o.APIKey == "" {
		return o, fmt.Errorf("%s is not set: make a key at https://wandb.ai/authorize and export it", wandb.EnvAPIKey)
	}
	return o, nil
}

func printResults(w io.Writer, res []wandb.Result) {
	for _, r := range res {
		fmt.Fprintln(w, r)
	}
}

func cmdWandbSync(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("wandb sync", "[DIR] [--project P] [--entity E]", "Upload offline W&B folders (default: <store>/wandb), going on where an earlier sync stopped", stderr)
	store := storeFlag(fs)
	project := fs.String("project", "", "W&B project (default: the one each folder names)")
	entity := fs.String("entity", "", "W&B entity (default: the one each folder names, or the key's own)")
	chunk := fs.Int("chunk-lines", 0, "history lines per request (default 1000)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("want at most one folder")
	}
	dir := filepath.Join(*store, "wandb")
	if len(pos) == 1 {
		dir = pos[0]
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("offline folder %s: %w", dir, err)
	}
	o, err := wandbOpts(stderr)
	if err != nil {
		return err
	}
	o.Project, o.Entity, o.ChunkLines = *project, *entity, *chunk
	// The store, when it can be read, finishes folders whose live upload
	// gave up; a store held by a running training cannot be, and is not
	// needed for the rest.
	if st, err := openStore(*store, true); err == nil {
		defer st.Close()
		o.Store = st
	} else if !errors.Is(err, kv.ErrNotFound) {
		o.Logger.Warn("wandb sync: going on without the store", "store", *store, "err", err)
	}
	ctx, stop := interruptible(stderr)
	defer stop()
	res, err := wandb.Sync(ctx, dir, o)
	printResults(stdout, res)
	if err != nil {
		return fmt.Errorf("%w\nrun `lens wandb sync` again to go on", err)
	}
	if len(res) == 0 {
		fmt.Fprintf(stdout, "no offline runs in %s\n", dir)
	}
	return nil
}

func cmdWandbUpload(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("wandb upload", "RUN --project P [--entity E]", "Upload a stored run to W&B, skipping the history lines the server already has", stderr)
	store := storeFlag(fs)
	project := fs.String("project", "", "W&B project (required)")
	entity := fs.String("entity", "", "W&B entity (default: the key's own)")
	chunk := fs.Int("chunk-lines", 0, "history lines per request (default 1000)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *project == "" {
		return usagef("want one run and --project P")
	}
	o, err := wandbOpts(stderr)
	if err != nil {
		return err
	}
	o.Project, o.Entity, o.ChunkLines = *project, *entity, *chunk
	st, err := openStore(*store, true)
	if err != nil {
		return err
	}
	defer st.Close()
	meta, err := st.FindRun(pos[0])
	if err != nil {
		return err
	}
	ctx, stop := interruptible(stderr)
	defer stop()
	res, err := wandb.SyncRun(ctx, st, meta.ID, o)
	if err != nil {
		return err
	}
	printResults(stdout, []wandb.Result{res})
	return nil
}
