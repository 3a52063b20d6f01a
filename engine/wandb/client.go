package wandb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"lens/engine/httpx"
	"lens/engine/secret"
)

// client speaks the two parts of W&B's API that lens needs: GraphQL at
// {base}/graphql and the file stream at
// {base}/files/{entity}/{project}/{run}/file_stream, both with HTTP basic
// auth "api:<key>" (as the Python SDK's internal_api.Api and file_stream.py
// do).
type client struct {
	base  string
	key   Key
	red   *secret.Redactor // the key and its basic-auth form
	http  *http.Client
	retry Retry
	log   *slog.Logger
	// sleep waits between retries, returning early when ctx ends.
	sleep func(ctx context.Context, d time.Duration) error
}

// keyName names the key in redacted text: "[W&B API key redacted]".
const keyName = "W&B API key"

func newClient(o Options) *client {
	red := (*secret.Redactor)(nil).With(keyName, o.APIKey, secret.BasicAuth("api", o.APIKey))
	return &client{base: o.BaseURL, key: o.APIKey, red: red, http: o.HTTPClient, retry: o.Retry, log: o.Logger, sleep: httpx.SleepContext}
}

// statusError is a response other than 2xx, with the start of its body
// (key scrubbed).
type statusError struct {
	httpx.StatusError
	body string
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("HTTP %d", e.Status)
	switch e.Status {
	case http.StatusUnauthorized, http.StatusForbidden:
		msg += " (W&B rejected the API key; check " + EnvAPIKey + ")"
	case http.StatusNotFound:
		msg += " (no such entity, project or run)"
	}
	if e.body != "" {
		msg += ": " + e.body
	}
	return msg
}

// retryable says whether err may go away on its own: network failures,
// rate limits and server errors (httpx.Temporary), but not a GraphQL
// error, which is the server rejecting the request.
func retryable(err error) bool {
	var ge *graphQLError
	return httpx.Temporary(err) && !errors.As(err, &ge)
}

// scrub removes the key, and the basic-auth token made from it, from text
// that came back from a server, in case a proxy or server echoes headers.
func (c *client) scrub(s string) string { return c.red.Redact(s) }

// post sends body as JSON to path once and decodes a 2xx JSON answer into
// out (when not nil).
func (c *client) post(ctx context.Context, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("base URL %q: %w", c.base, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "lens")
	req.SetBasicAuth("api", string(c.key))
	resp, err := httpx.Send(c.http, req, 4<<20, c.red)
	if err != nil {
		return err
	}
	data := resp.Body
	if resp.Status < 200 || resp.Status > 299 {
		return &statusError{StatusError: httpx.StatusError{Status: resp.Status, Header: resp.Header}, body: c.scrub(excerpt(data))}
	}
	if out == nil || len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode response: %w: %s", err, c.scrub(excerpt(data)))
	}
	return nil
}

func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// policy is the client's Retry as engine/httpx's.
func (c *client) policy() httpx.Retry {
	return httpx.Retry{Attempts: c.retry.Attempts, Backoff: c.retry.Backoff, Max: c.retry.Max, Retryable: retryable, Sleep: c.sleep}
}

// withRetry runs fn until it succeeds, fails for good, or has failed
// c.retry.Attempts times (engine/httpx's loop).
func (c *client) withRetry(ctx context.Context, what string, fn func() error) error {
	r := c.policy()
	r.OnRetry = func(attempt int, wait time.Duration, err error) {
		c.log.Warn("wandb: request failed, retrying", "what", what, "attempt", attempt, "wait", wait, "err", err)
	}
	n, err := r.Do(ctx, fn)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return fmt.Errorf("%s: %w", what, err)
	case retryable(err):
		return fmt.Errorf("%s: gave up after %d attempts: %w", what, n, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

type graphQLError struct{ msgs []string }

func (e *graphQLError) Error() string { return "GraphQL: " + strings.Join(e.msgs, "; ") }

// graphql runs query with vars, retrying, and decodes "data" into out.
func (c *client) graphql(ctx context.Context, what, query string, vars map[string]any, out any) error {
	return c.withRetry(ctx, what, func() error {
		var resp struct {
			Data   json.RawMessage `json:"data"`
			Errors []struct {
				Message string `json:"message"`
			} `json:"errors"`
		}
		if err := c.post(ctx, "/graphql", map[string]any{"query": query, "variables": vars}, &resp); err != nil {
			return err
		}
		if len(resp.Errors) > 0 {
			ge := &graphQLError{}
			for _, e := range resp.Errors {
				ge.msgs = append(ge.msgs, c.scrub(e.Message))
			}
			return ge
		}
		if err := json.Unmarshal(resp.Data, out); err != nil {
			return fmt.Errorf("decode data: %w", err)
		}
		return nil
	})
}

const viewerQuery = `query Viewer { viewer { id entity username } }`

// viewerEntity is the key's default entity, where runs go when no entity
// is given.
func (c *client) viewerEntity(ctx context.Context) (string, error) {
	var out struct {
		Viewer *struct {
			Entity string `json:"entity"`
		} `json:"viewer"`
	}
	if err := c.graphql(ctx, "wandb viewer", viewerQuery, nil, &out); err != nil {
		return "", err
	}
	if out.Viewer == nil || out.Viewer.Entity == "" {
		return "", fmt.Errorf("wandb viewer: the API key has no default entity; give an entity")
	}
	return out.Viewer.Entity, nil
}

// upsertQuery is the SDK's UpsertBucket mutation (internal_api.py
// upsert_run), with the variables lens uses.
const upsertQuery = `mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $displayName: String, $config: JSONString, $tags: [String!], $jobType: String) {
  upsertBucket(input: {id: $id, name: $name, modelName: $project, entityName: $entity, displayName: $displayName, config: $config, tags: $tags, jobType: $jobType}) {
    bucket { id name displayName project { id name entity { id name } } historyLineCount }
    inserted
  }
}`

// runInfo is what W&B keeps about a run besides its history.
type runInfo struct {
	ID          string         `json:"wandb_id"`     // W&B run id (RunID)
	LensID      string         `json:"lens_run_id"`  // lens run id
	DisplayName string         `json:"display_name"` // lens run name
	Config      map[string]any `json:"config"`       // W&B form: {"key": {"value": v}}
	Tags        []string       `json:"tags,omitempty"`
}

// upsert creates or updates the run and returns the entity it lives in
// and how many history lines the server has.
func (c *client) upsert(ctx context.Context, entity, project string, r runInfo) (string, int, error) {
	cfg, err := json.Marshal(r.Config)
	if err != nil {
		return "", 0, fmt.Errorf("wandb config of run %s: %w", r.LensID, err)
	}
	vars := map[string]any{"name": r.ID, "project": project, "displayName": r.DisplayName, "config": string(cfg), "jobType": "lens"}
	if entity != "" {
		vars["entity"] = entity
	}
	if len(r.Tags) > 0 {
		vars["tags"] = r.Tags
	}
	var out struct {
		UpsertBucket *struct {
			Bucket struct {
				Name    string `json:"name"`
				Project *struct {
					Name   string `json:"name"`
					Entity *struct {
						Name string `json:"name"`
					} `json:"entity"`
				} `json:"project"`
				HistoryLineCount *int `json:"historyLineCount"`
			} `json:"bucket"`
		} `json:"upsertBucket"`
	}
	if err := c.graphql(ctx, "wandb upsertBucket "+r.ID, upsertQuery, vars, &out); err != nil {
		return "", 0, err
	}
	if out.UpsertBucket == nil {
		return "", 0, fmt.Errorf("wandb upsertBucket %s: empty answer", r.ID)
	}
	b := out.UpsertBucket.Bucket
	if b.Project != nil && b.Project.Entity != nil && b.Project.Entity.Name != "" {
		entity = b.Project.Entity.Name
	}
	n := 0
	if b.HistoryLineCount != nil {
		n = *b.HistoryLineCount
	}
	return entity, n, nil
}

// resumeQuery is the part of the SDK's RunResumeStatus query
// (internal_api.py run_resume_status) that says where history stands.
const resumeQuery = `query RunResumeStatus($project: String, $entity: String, $name: String!) {
  model(name: $project, entityName: $entity) {
    id name entity { id name }
    bucket(name: $name, missingOk: true) { id name historyLineCount historyTail }
  }
}`

// serverHistory is where a run's history stands on the server.
type serverHistory struct {
	Lines    int // historyLineCount
	LastStep int // _step of the last line, -1 if unknown or none
}

// history asks the server how many history lines the run has and the
// step of the last one.
func (c *client) history(ctx context.Context, entity, project, name string) (serverHistory, error) {
	vars := map[string]any{"project": project, "entity": entity, "name": name}
	var out struct {
		Model *struct {
			Bucket *struct {
				HistoryLineCount *int   `json:"historyLineCount"`
				HistoryTail      string `json:"historyTail"`
			} `json:"bucket"`
		} `json:"model"`
	}
	h := serverHistory{LastStep: -1}
	if err := c.graphql(ctx, "wandb historyLineCount "+name, resumeQuery, vars, &out); err != nil {
		return h, err
	}
	if out.Model == nil || out.Model.Bucket == nil {
		return h, nil // no such run yet
	}
	b := out.Model.Bucket
	if b.HistoryLineCount != nil {
		h.Lines = *b.HistoryLineCount
	}
	if h.Lines > 0 && b.HistoryTail != "" {
		var tail []string
		if err := json.Unmarshal([]byte(b.HistoryTail), &tail); err == nil && len(tail) > 0 {
			if step, ok := lineStep(tail[len(tail)-1]); ok {
				h.LastStep = step
			}
		}
	}
	return h, nil
}

// fsRequest is one POST to the file stream (file_stream.py; the Go core's
// FileStreamRequestJSON).
type fsRequest struct {
	Files    map[string]fsFile `json:"files,omitempty"`
	Complete *bool             `json:"complete,omitempty"`
	ExitCode *int              `json:"exitcode,omitempty"`
}

// fsFile is a run of lines of one file starting at line Offset.
type fsFile struct {
	Offset  int      `json:"offset"`
	Content []string `json:"content"`
}

// Files in the file stream.
const (
	historyFile = "wandb-history.jsonl"
	summaryFile = "wandb-summary.json"
)

// fileStream posts req once (callers decide about retries, because a
// lost answer leaves it unknown whether the lines were taken).
func (c *client) fileStream(ctx context.Context, entity, project, name string, req fsRequest) error {
	path := "/files/" + url.PathEscape(entity) + "/" + url.PathEscape(project) + "/" + url.PathEscape(name) + "/file_stream"
	return c.post(ctx, path, req, nil)
}
