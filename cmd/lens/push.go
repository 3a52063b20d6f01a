package main

import (
	"fmt"
	"io"
	"log/slog"

	"lens/engine/hf"
)

func cmdPush(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("push", "RUN --repo OWNER/NAME [--private] [--all-checkpoints] [--revision main]",
		"Upload a run's LoRA adapter (PEFT format) and a model card to a Hugging Face Hub model repository, "+
			"with the token in HF_TOKEN (endpoint: HF_ENDPOINT, default https://huggingface.co)", stderr)
	store := storeFlag(fs)
	repo := fs.String("repo", "", "Hub repository OWNER/NAME (created if missing)")
	private := fs.Bool("private", false, "create the repository private")
	all := fs.Bool("all-checkpoints", false, "one commit per stored checkpoint, oldest first, before the final one")
	revision := fs.String("revision", "main", "branch to commit to")
	baseModel := fs.String("base-model", "", "Hub id of the base model for the card (default: guessed from the base directory)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *repo == "" {
		return usagef("want one run and --repo OWNER/NAME")
	}
	if err := hf.ValidateRepo(*repo); err != nil {
		return usagef("%v", err)
	}
	token := envHFToken()
	if token == "" {
		return hf.ErrNoToken
	}
	st, err := openStore(*store, false)
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
	res, err := hf.Push(ctx, st, meta.ID, hf.PushOptions{Repo: *repo, Private: *private, Revision: *revision,
		AllCheckpoints: *all, Token: token, Endpoint: envHFEndpoint(), BaseModel: *baseModel,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	for _, c := range res.Commits {
		fmt.Fprintf(stdout, "step %d: %s\n", c.Step, c.URL)
	}
	fmt.Fprintf(stdout, "pushed run %s (%s) to %s\n", meta.ID, meta.Name, res.URL)
	return nil
}
