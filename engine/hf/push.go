package hf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"lens/engine/runs"
	"lens/engine/secret"
	"lens/kv"
)

// PushOptions say where and what to push.
type PushOptions struct {
	Repo     string // OWNER/NAME
	Private  bool   // create the repository private (an existing one keeps its visibility)
	Revision string // branch; default "main"
	// AllCheckpoints makes every stored checkpoint before the last its own
	// commit ("checkpoint step N"), oldest first, before the final commit.
	AllCheckpoints bool
	Token          secret.Token // required; cmd/lens reads it from HF_TOKEN
	Endpoint       string       // default DefaultEndpoint; cmd/lens reads HF_ENDPOINT
	// BaseModel is the Hub id of the base model for the card; by default it
	// is read from the base directory when that is a Hub download.
	BaseModel string
	Logger    *slog.Logger
	// Client, when set, is used instead of a new one (tests shorten its
	// backoff); Token and Endpoint are then ignored.
	Client *Client
}

// PushResult is what a push made.
type PushResult struct {
	Repo    string
	URL     string // the repository's page
	Commits []PushedCommit
}

// PushedCommit is one commit of a push.
type PushedCommit struct {
	Step    int // checkpoint step of the adapter in it
	Message string
	CommitInfo
}

// EventKind is the kind of the event a push records on its run.
const EventKind = "hf_push"

type pushCommit struct {
	step    int
	message string
	files   []File
}

// Push uploads the adapter of a stored LoRA run to a Hub model repository:
// the latest checkpoint in PEFT's format plus a model card as one commit,
// preceded, with AllCheckpoints, by one commit per earlier checkpoint.
// Everything is exported before anything is sent. The only change to the
// store is one "hf_push" event on the run naming the repository and the
// final commit.
func Push(ctx context.Context, st *kv.Store, runID string, opts PushOptions) (PushResult, error) {
	if err := ValidateRepo(opts.Repo); err != nil {
		return PushResult{}, err
	}
	meta, err := st.GetRun(runID)
	if err != nil {
		return PushResult{}, fmt.Errorf("push run %s: %w", runID, err)
	}
	spec, err := runs.SpecOf(meta)
	if err != nil {
		return PushResult{}, err
	}
	if spec.LoRA == nil {
		return PushResult{}, fmt.Errorf("push run %s: a full fine-tune has no adapter to push", runID)
	}
	cps, err := st.Checkpoints(runID)
	if err != nil {
		return PushResult{}, fmt.Errorf("push run %s: %w", runID, err)
	}
	if len(cps) == 0 {
		return PushResult{}, fmt.Errorf("push run %s: it has no checkpoint yet", runID)
	}
	client := opts.Client
	if client == nil {
		if opts.Token == "" {
			return PushResult{}, ErrNoToken
		}
		client = NewClient(opts.Endpoint, opts.Token)
		client.Logger = opts.Logger
	}
	rev := opts.Revision
	if rev == "" {
		rev = "main"
	}

	final := cps[len(cps)-1].Step
	var commits []pushCommit
	if opts.AllCheckpoints {
		for _, c := range cps[:len(cps)-1] {
			files, err := adapterFiles(st, runID, c.Step)
			if err != nil {
				return PushResult{}, err
			}
			commits = append(commits, pushCommit{c.Step, fmt.Sprintf("checkpoint step %d", c.Step), files})
		}
	}
	files, err := adapterFiles(st, runID, final)
	if err != nil {
		return PushResult{}, err
	}
	info, err := CardInfoOf(st, meta, final)
	if err != nil {
		return PushResult{}, err
	}
	info.Repo = opts.Repo
	if opts.BaseModel != "" {
		info.BaseModel = opts.BaseModel
	}
	files = append(files, File{Path: "README.md", Content: []byte(ModelCard(info))})
	name := meta.Name
	if name == "" {
		name = meta.ID
	}
	commits = append(commits, pushCommit{final, fmt.Sprintf("lens run %s (%s): adapter at step %d", meta.ID, name, final), files})

	if err := client.CreateRepo(ctx, opts.Repo, opts.Private); err != nil {
		return PushResult{}, err
	}
	res := PushResult{Repo: opts.Repo, URL: client.Endpoint + "/" + opts.Repo}
	for _, c := range commits {
		ci, err := client.Commit(ctx, opts.Repo, rev, c.message, c.files)
		if err != nil {
			return res, fmt.Errorf("push run %s (step %d): %w", runID, c.step, err)
		}
		res.Commits = append(res.Commits, PushedCommit{Step: c.step, Message: c.message, CommitInfo: ci})
	}
	last := res.Commits[len(res.Commits)-1]
	ev := kv.Event{Step: final, Kind: EventKind, Message: fmt.Sprintf("pushed to %s: %s", opts.Repo, last.URL)}
	if err := st.AddEvent(runID, ev); err != nil {
		return res, fmt.Errorf("pushed run %s to %s, but recording the event failed: %w", runID, opts.Repo, err)
	}
	return res, nil
}

// CardInfoOf gathers a run's model card facts from the store.
func CardInfoOf(st *kv.Store, meta kv.RunMeta, step int) (CardInfo, error) {
	spec, err := runs.SpecOf(meta)
	if err != nil {
		return CardInfo{}, err
	}
	info := CardInfo{RunID: meta.ID, RunName: meta.Name, Status: meta.Status, Step: step, Data: spec.Data.Source,
		Train: spec.Train, LensVersion: meta.LensVersion, BaseModel: hubBase(spec.Base.Dir)}
	if spec.LoRA != nil {
		info.LoRA = *spec.LoRA
	}
	info.BaseRef = spec.Base.Dir
	if info.BaseRef == "" {
		info.BaseRef = "lens:" + spec.Base.Hash
	}
	if info.LensVersion == "" {
		info.LensVersion = runs.Version
	}
	loss, err := st.ReadMetric(meta.ID, "loss")
	if err != nil {
		return CardInfo{}, fmt.Errorf("run %s: %w", meta.ID, err)
	}
	if len(loss) > 0 {
		p := loss[len(loss)-1]
		info.FinalLoss = &p
	}
	names, err := st.MetricNames(meta.ID)
	if err != nil {
		return CardInfo{}, fmt.Errorf("run %s: %w", meta.ID, err)
	}
	main := spec.MainEval()
	var evals []string
	for _, n := range names {
		if e, ok := strings.CutPrefix(n, "eval/"); ok {
			evals = append(evals, e)
		}
	}
	// The run's own eval set first, the others by name.
	sort.SliceStable(evals, func(i, j int) bool {
		if (evals[i] == main) != (evals[j] == main) {
			return evals[i] == main
		}
		return evals[i] < evals[j]
	})
	for _, e := range evals {
		pts, err := st.ReadMetric(meta.ID, "eval/"+e)
		if err != nil {
			return CardInfo{}, fmt.Errorf("run %s: %w", meta.ID, err)
		}
		if len(pts) == 0 {
			continue
		}
		s := EvalSummary{Name: e, First: pts[0], Last: pts[len(pts)-1], Best: pts[0]}
		for _, p := range pts {
			if p.Value < s.Best.Value {
				s.Best = p
			}
		}
		info.Evals = append(info.Evals, s)
	}
	return info, nil
}

// hfCache matches a model directory inside the Hugging Face cache.
var hfCache = regexp.MustCompile(`models--([A-Za-z0-9][A-Za-z0-9._-]*)--([A-Za-z0-9][A-Za-z0-9._-]*)(/|$)`)

// hubBase guesses the Hub id of a base model directory: from its place
// in the Hugging Face cache, or from "_name_or_path" in its config.json
// when that is a Hub id. "" when neither says.
func hubBase(dir string) string {
	if dir == "" {
		return ""
	}
	if m := hfCache.FindStringSubmatch(filepath.ToSlash(dir)); m != nil {
		return m[1] + "/" + m[2]
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return ""
	}
	var c struct {
		Name string `json:"_name_or_path"`
	}
	if json.Unmarshal(b, &c) == nil && hubID.MatchString(c.Name) && !strings.HasPrefix(c.Name, ".") {
		if _, err := os.Stat(c.Name); errors.Is(err, os.ErrNotExist) {
			return c.Name
		}
	}
	return ""
}
