package hf

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"lens/engine/hf/hubtest"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/train"
	"lens/kv"
)

const token = "hf_testTOKEN0123456789abcdefSECRET"

// redacted is what the token becomes in errors.
const redacted = "[" + TokenName + " redacted]"

func openStore(t *testing.T) *kv.Store {
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// trainRun trains a tiny LoRA run (checkpoints at steps 2, 4 and 6) in st.
func trainRun(t *testing.T, st *kv.Store, full bool) kv.RunMeta {
	t.Helper()
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 3)
	require.NoError(t, err)
	ref, err := runs.StoreBase(st, base)
	require.NoError(t, err)
	spec := runs.Spec{Name: "tiny-push", Base: ref, LoRA: &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}},
		Train: train.Config{Steps: 6, BatchSize: 2, SeqLen: 16, LR: 1e-2, EvalEvery: 2, EvalBatches: 2, Seed: 5},
		Data:  runs.DataRef{Source: "opticks"}, CheckpointEvery: 2}
	if full {
		spec.LoRA = nil
	}
	job, err := runs.Prepare(spec, base)
	require.NoError(t, err)
	meta, err := job.Run(context.Background(), st, runs.Options{})
	require.NoError(t, err)
	return meta
}

// fastClient talks to hub with a short backoff so retry tests stay quick.
func fastClient(hub *hubtest.Hub) *Client {
	c := NewClient(hub.URL, token)
	c.Backoff = time.Millisecond
	return c
}

// exported is the PEFT directory `lens export` writes for the run at step.
func exported(t *testing.T, st *kv.Store, runID string, step int) map[string][]byte {
	dir := t.TempDir()
	_, err := ExportAdapter(st, runID, step, dir)
	require.NoError(t, err)
	out := map[string][]byte{}
	for _, n := range []string{AdapterConfigFile, AdapterWeightsFile} {
		b, err := os.ReadFile(filepath.Join(dir, n))
		require.NoError(t, err)
		out[n] = b
	}
	return out
}

func TestPushAllCheckpoints(t *testing.T) {
	st := openStore(t)
	meta := trainRun(t, st, false)
	hub := hubtest.New(t, token)
	before, err := st.Events(meta.ID)
	require.NoError(t, err)
	metaBefore, err := st.GetRun(meta.ID)
	require.NoError(t, err)

	res, err := Push(context.Background(), st, meta.ID, PushOptions{Repo: "alice/tiny", Private: true, AllCheckpoints: true, Client: fastClient(hub)})
	require.NoError(t, err)
	require.Empty(t, hub.Problems())

	repo, ok := hub.Repo("alice/tiny")
	require.True(t, ok)
	require.True(t, repo.Private)
	require.Len(t, repo.Commits, 3)
	for i, step := range []int{2, 4, 6} {
		c := repo.Commits[i]
		require.Equal(t, "main", c.Revision)
		want := exported(t, st, meta.ID, step)
		require.Equal(t, want[AdapterConfigFile], c.Files[AdapterConfigFile], "step %d config", step)
		require.Equal(t, want[AdapterWeightsFile], c.Files[AdapterWeightsFile], "step %d weights", step)
		require.Contains(t, c.LFS, AdapterWeightsFile, "safetensors go through LFS")
		require.NotContains(t, c.LFS, AdapterConfigFile, "small JSON goes inline")
		require.Equal(t, res.Commits[i].OID, c.OID)
		require.Equal(t, step, res.Commits[i].Step)
		if i < 2 {
			require.Equal(t, fmt.Sprintf("checkpoint step %d", step), c.Summary)
			require.NotContains(t, c.Files, "README.md")
		}
	}
	// Earlier checkpoints really differ, so the order check means something.
	require.NotEqual(t, repo.Commits[0].Files[AdapterWeightsFile], repo.Commits[2].Files[AdapterWeightsFile])

	card := string(repo.Commits[2].Files["README.md"])
	require.Contains(t, repo.Commits[2].Summary, meta.ID)
	evals, err := st.ReadMetric(meta.ID, "eval/opticks")
	require.NoError(t, err)
	losses, err := st.ReadMetric(meta.ID, "loss")
	require.NoError(t, err)
	for _, want := range []string{"library_name: peft", "| r | 4 |", "| alpha | 8 |", "q_proj, v_proj", "| steps | 6 |",
		"| learning rate | 0.01 |", "| seed | 5 |", meta.ID,
		fmt.Sprintf("| final train loss | 6 | %.4f |", losses[len(losses)-1].Value),
		fmt.Sprintf("| eval loss `opticks`, first | 0 | %.4f |", evals[0].Value),
		fmt.Sprintf("| eval loss `opticks`, last | 6 | %.4f |", evals[len(evals)-1].Value),
		`PeftModel.from_pretrained(base, "alice/tiny")`} {
		require.Contains(t, card, want)
	}

	// Every Hub request carried the token; storage never got it.
	for _, r := range hub.Requests() {
		if r.Route == hubtest.RouteUpload {
			require.Equal(t, "missing", r.Auth)
		} else {
			require.Equal(t, "ok", r.Auth, "%s %s", r.Method, r.Path)
		}
	}
	require.Equal(t, 3, hub.Count(hubtest.RouteVerify), "each new LFS object is verified")

	// The store gained one event and nothing else.
	after, err := st.Events(meta.ID)
	require.NoError(t, err)
	require.Len(t, after, len(before)+1)
	ev := after[len(after)-1]
	require.Equal(t, EventKind, ev.Kind)
	require.Contains(t, ev.Message, "alice/tiny")
	require.Contains(t, ev.Message, res.Commits[2].URL)
	require.NotContains(t, ev.Message, token)
	metaAfter, err := st.GetRun(meta.ID)
	require.NoError(t, err)
	require.Equal(t, metaBefore, metaAfter)

	// A second push of the same adapter: the repo exists (409 is fine),
	// the Hub already has the LFS object, so nothing is uploaded again.
	uploads := hub.Count(hubtest.RouteUpload)
	res2, err := Push(context.Background(), st, meta.ID, PushOptions{Repo: "alice/tiny", Client: fastClient(hub)})
	require.NoError(t, err)
	require.Len(t, res2.Commits, 1)
	require.Equal(t, uploads, hub.Count(hubtest.RouteUpload))
	repo, _ = hub.Repo("alice/tiny")
	require.Len(t, repo.Commits, 4)
	require.Equal(t, exported(t, st, meta.ID, -1)[AdapterWeightsFile], repo.Files[AdapterWeightsFile])
	require.Empty(t, hub.Problems())
}

func TestPushRetriesTransientFailures(t *testing.T) {
	st := openStore(t)
	meta := trainRun(t, st, false)
	for _, route := range []string{hubtest.RouteCreate, hubtest.RoutePreupload, hubtest.RouteBatch, hubtest.RouteUpload, hubtest.RouteVerify, hubtest.RouteCommit} {
		t.Run(route, func(t *testing.T) {
			hub := hubtest.New(t, token)
			hub.Fail(route, http.StatusInternalServerError, `{"error":"Internal Error - We're working hard to fix this as soon as possible!"}`)
			hub.Fail(route, http.StatusTooManyRequests, `{"error":"slow down"}`)
			_, err := Push(context.Background(), st, meta.ID, PushOptions{Repo: "alice/retry", Client: fastClient(hub)})
			require.NoError(t, err)
			require.Equal(t, 3, hub.Count(route), "two failures, then success")
			repo, _ := hub.Repo("alice/retry")
			require.Len(t, repo.Commits, 1)
			require.Equal(t, exported(t, st, meta.ID, -1)[AdapterWeightsFile], repo.Files[AdapterWeightsFile])
			require.Empty(t, hub.Problems())
		})
	}
}

func TestPushErrors(t *testing.T) {
	st := openStore(t)
	meta := trainRun(t, st, false)
	full := trainRun(t, st, true)
	echo := fmt.Sprintf(`{"error":"You don't have the rights to create a model under the namespace \"alice\" with token %s"}`, token)
	cases := []struct {
		name     string
		run      string
		opts     PushOptions
		fail     []string // route, status, body triples
		want     []string
		remote   bool
		requests int // requests the hub may see (-1: any)
	}{
		{"no token", meta.ID, PushOptions{Repo: "alice/x"}, nil, []string{"HF_TOKEN"}, true, 0},
		{"bad repo", meta.ID, PushOptions{Repo: "no-owner", Token: token}, nil, []string{"OWNER/NAME"}, false, 0},
		{"full run", full.ID, PushOptions{Repo: "alice/x", Token: token}, nil, []string{"full fine-tune"}, false, 0},
		{"forbidden", meta.ID, PushOptions{Repo: "alice/x", Token: token}, []string{hubtest.RouteCommit, "403", echo},
			[]string{"HTTP 403", "rights to create a model", redacted}, true, -1},
		{"x-error-message", meta.ID, PushOptions{Repo: "alice/x", Token: token}, []string{hubtest.RoutePreupload, "401", "nope " + token},
			[]string{"HTTP 401", "nope " + redacted}, true, -1},
		{"lasting 500", meta.ID, PushOptions{Repo: "alice/x", Token: token},
			[]string{hubtest.RouteCreate, "502", "bad gateway", hubtest.RouteCreate, "502", "bad gateway", hubtest.RouteCreate, "502", "bad gateway", hubtest.RouteCreate, "502", "bad gateway " + token},
			[]string{"HTTP 502", "after 4 attempts"}, true, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub := hubtest.New(t, token)
			for i := 0; i < len(tc.fail); i += 3 {
				var status int
				fmt.Sscan(tc.fail[i+1], &status)
				hub.Fail(tc.fail[i], status, tc.fail[i+2])
			}
			tc.opts.Endpoint = hub.URL
			if tc.opts.Token != "" {
				c := NewClient(hub.URL, tc.opts.Token)
				c.Backoff = time.Millisecond
				tc.opts.Client = c
			}
			evBefore, _ := st.Events(tc.run)
			_, err := Push(context.Background(), st, tc.run, tc.opts)
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), token)
			require.Equal(t, tc.remote, IsRemote(err), "IsRemote(%v)", err)
			if tc.requests >= 0 {
				require.Len(t, hub.Requests(), tc.requests)
			}
			evAfter, _ := st.Events(tc.run)
			require.Equal(t, len(evBefore), len(evAfter), "a failed push records nothing")
		})
	}
}

// TestTransportErrorsAreRedacted: an unreachable endpoint gives a
// *url.Error naming the URL; with the token in that URL, the error text
// must still not carry it, and must not unwrap to the original error.
func TestTransportErrorsAreRedacted(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	endpoint := srv.URL + "/" + token
	srv.Close()
	c := NewClient(endpoint, token)
	c.Backoff, c.Attempts = time.Millisecond, 2
	err := c.CreateRepo(context.Background(), "alice/x", false)
	require.Error(t, err)
	var te *TransportError
	require.ErrorAs(t, err, &te)
	require.True(t, IsRemote(err))
	for e := error(err); e != nil; e = errors.Unwrap(e) {
		require.NotContains(t, e.Error(), token)
	}
	require.Contains(t, err.Error(), redacted)
	require.Contains(t, err.Error(), "connection refused")
}

func TestRetryStopsWithContext(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := NewClient(srv.URL, token)
	c.Backoff, c.Attempts = time.Hour, 5
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.CreateRepo(ctx, "alice/x", false)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 5*time.Second)
	require.Equal(t, 1, calls)
	require.Contains(t, err.Error(), "503")
}

func TestServerMessages(t *testing.T) {
	cases := []struct {
		name   string
		header string
		body   string
		want   string
	}{
		{"header", "Repository not found", "", "HTTP 404: Repository not found"},
		{"error string", "", `{"error":"Invalid username or password."}`, "HTTP 404: Invalid username or password."},
		{"error list", "", `{"error":["a","b"]}`, "HTTP 404: a; b"},
		{"oauth", "", `{"error":"invalid_grant","error_description":"expired"}`, "HTTP 404: invalid_grant: expired"},
		{"errors", "", `{"errors":[{"message":"first"},{"message":"second"}]}`, "HTTP 404: first; second"},
		{"plain text", "", "upstream exploded", "HTTP 404: upstream exploded"},
		{"empty", "", "", "HTTP 404: Not Found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.header != "" {
					w.Header().Set("X-Error-Message", tc.header)
				}
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			err := NewClient(srv.URL, token).CreateRepo(context.Background(), "alice/x", false)
			var he *Error
			require.ErrorAs(t, err, &he)
			require.Equal(t, http.StatusNotFound, he.Status)
			require.Equal(t, "hub create repo alice/x: "+tc.want, err.Error())
		})
	}
}

func TestCommitShapes(t *testing.T) {
	hub := hubtest.New(t, token)
	hub.LFSThreshold = 600 // big.bin would be LFS anyway; the threshold makes same.txt LFS too
	c := fastClient(hub)
	ctx := context.Background()
	require.NoError(t, c.CreateRepo(ctx, "alice/files", false))
	big := bytes.Repeat([]byte{0, 1, 2, 255}, 300) // 1200 bytes: LFS, sample is its first 512
	files := []File{{"README.md", []byte("# hi\n")}, {"dir/big.bin", big}, {"empty.txt", nil}, {"same.txt", append([]byte(nil), big...)}}
	info, err := c.Commit(ctx, "alice/files", "refs/pr/1", "two kinds", files)
	require.NoError(t, err)
	require.Empty(t, hub.Problems())
	repo, _ := hub.Repo("alice/files")
	require.Len(t, repo.Commits, 1)
	got := repo.Commits[0]
	require.Equal(t, info.OID, got.OID)
	require.Equal(t, "refs/pr/1", got.Revision)
	require.Equal(t, "two kinds", got.Summary)
	require.ElementsMatch(t, []string{"dir/big.bin", "same.txt"}, got.LFS)
	for _, f := range files {
		require.Equal(t, string(f.Content), string(got.Files[f.Path]), f.Path)
	}
	require.Equal(t, 1, hub.Count(hubtest.RouteUpload), "identical content is one LFS object")

	_, err = c.Commit(ctx, "alice/files", "main", "dup", []File{{"a", []byte("x")}, {"a", []byte("y")}})
	require.ErrorContains(t, err, "repeated")
	_, err = c.Commit(ctx, "alice/nope", "main", "missing repo", []File{{"a", []byte("x")}})
	require.ErrorContains(t, err, "HTTP 404: Repository not found")
}

func TestReadAdapter(t *testing.T) {
	st := openStore(t)
	meta := trainRun(t, st, false)
	dir := t.TempDir()
	cm, err := ExportAdapter(st, meta.ID, 4, dir)
	require.NoError(t, err)
	require.Equal(t, 4, cm.Step)
	info, err := ReadAdapter(dir)
	require.NoError(t, err)
	require.Equal(t, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}}, info.Config)
	require.Len(t, info.Tensors, 2*2*2) // 2 layers × q,v × A,B
	require.Equal(t, []int{4, 32}, info.Tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"])
	require.True(t, strings.HasPrefix(info.BaseModel, "lens:"))

	_, err = ExportAdapter(st, meta.ID, 3, t.TempDir())
	require.Error(t, err, "no checkpoint at step 3")

	cfg := filepath.Join(dir, AdapterConfigFile)
	b, _ := os.ReadFile(cfg)
	require.NoError(t, os.WriteFile(cfg, bytes.Replace(b, []byte(`"LORA"`), []byte(`"IA3"`), 1), 0o644))
	_, err = ReadAdapter(dir)
	require.ErrorContains(t, err, "not LORA")
}

func TestHubBase(t *testing.T) {
	dir := t.TempDir()
	named := filepath.Join(dir, "named")
	require.NoError(t, os.MkdirAll(named, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(named, "config.json"), []byte(`{"_name_or_path":"meta-llama/Llama-3.2-1B"}`), 0o644))
	local := filepath.Join(dir, "local")
	require.NoError(t, os.MkdirAll(local, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(local, "config.json"), []byte(`{"_name_or_path":"/home/me/ckpt"}`), 0o644))
	for _, tc := range []struct{ dir, want string }{
		{"/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B/snapshots/abc", "Qwen/Qwen2.5-0.5B"},
		{named, "meta-llama/Llama-3.2-1B"},
		{local, ""},
		{"", ""},
		{filepath.Join(dir, "absent"), ""},
	} {
		require.Equal(t, tc.want, hubBase(tc.dir), tc.dir)
	}
}

// TestFakeHubRejects checks the fake's own checks, so that the tests
// above passing means the client's requests were right.
func TestFakeHubRejects(t *testing.T) {
	hub := hubtest.New(t, token)
	c := fastClient(hub)
	require.NoError(t, c.CreateRepo(context.Background(), "alice/r", false))
	oid := strings.Repeat("ab", 32)
	cases := []struct {
		name, method, path, ctype, body string
		auth                            bool
		status                          int
		problem                         string
	}{
		{"wrong token", "POST", "/api/models/alice/r/preupload/main", "application/json", `{"files":[]}`, false, 401, ""},
		{"bad sample", "POST", "/api/models/alice/r/preupload/main", "application/json", `{"files":[{"path":"a","sample":"!!","size":1}]}`, true, 400, "preupload entry"},
		{"not ndjson", "POST", "/api/models/alice/r/commit/main", "application/json", `{"key":"header","value":{"summary":"s","description":""}}`, true, 400, "x-ndjson"},
		{"no header", "POST", "/api/models/alice/r/commit/main", "application/x-ndjson", `{"key":"file","value":{"content":"eA==","path":"a","encoding":"base64"}}`, true, 400, "header comes first"},
		{"bad base64", "POST", "/api/models/alice/r/commit/main", "application/x-ndjson", "{\"key\":\"header\",\"value\":{\"summary\":\"s\",\"description\":\"\"}}\n{\"key\":\"file\",\"value\":{\"content\":\"%%%\",\"path\":\"a\",\"encoding\":\"base64\"}}", true, 400, "not base64"},
		{"unknown lfs object", "POST", "/api/models/alice/r/commit/main", "application/x-ndjson", "{\"key\":\"header\",\"value\":{\"summary\":\"s\",\"description\":\"\"}}\n{\"key\":\"lfsFile\",\"value\":{\"path\":\"w\",\"algo\":\"sha256\",\"oid\":\"" + oid + "\",\"size\":3}}", true, 400, "no stored LFS object"},
		{"token to storage", "PUT", "/lfs-storage/" + oid, "", "abc", true, 400, "token was sent to LFS storage"},
		{"wrong bytes", "PUT", "/lfs-storage/" + oid, "", "abc", false, 400, "uploaded 3 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, hub.URL+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			req.Header.Set(hubtest.UploadHeader, oid)
			if tc.auth {
				req.Header.Set("Authorization", "Bearer "+token)
			} else if tc.status == 401 {
				req.Header.Set("Authorization", "Bearer wrong")
			}
			n := len(hub.Problems())
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, tc.status, resp.StatusCode)
			if tc.problem == "" {
				require.Len(t, hub.Problems(), n)
			} else {
				require.Len(t, hub.Problems(), n+1)
				require.Contains(t, hub.Problems()[n], tc.problem)
			}
		})
	}
}
