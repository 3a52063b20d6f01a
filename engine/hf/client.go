// Package hf talks to the Hugging Face Hub: a small HTTP client that
// creates model repositories and makes commits (small files inline, large
// ones through the Git LFS batch API), a model card writer, and Push, which
// uploads a stored run's LoRA adapter in PEFT's format. It is not a general
// Hub client: it only uploads, and only to model repositories.
//
// The token is given by the caller (cmd/lens reads it from HF_TOKEN) and
// never appears in a log line or an error: every error that could carry
// text from the network is rebuilt with the token replaced. Retries and
// redaction are engine/httpx's and engine/secret's.
package hf

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"lens/engine/httpx"
	"lens/engine/secret"
)

// DefaultEndpoint is the public Hub.
const DefaultEndpoint = "https://huggingface.co"

// Client is a Hub client for one endpoint and one token.
type Client struct {
	Endpoint string
	HTTP     *http.Client
	// Attempts is how many times a request is tried when the server
	// answers 429 or 5xx or the network fails (default 4).
	Attempts int
	// Backoff is the wait before the second attempt; it doubles after
	// each failure (default 500ms). A 429's Retry-After wins when longer.
	Backoff time.Duration
	Logger  *slog.Logger

	token secret.Token
	red   *secret.Redactor // the token in all its forms
}

// NewClient returns a client for endpoint ("" means DefaultEndpoint; lens
// reads HF_ENDPOINT in cmd/lens) that authenticates with token.
func NewClient(endpoint string, token secret.Token) *Client {
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	return &Client{Endpoint: strings.TrimRight(endpoint, "/"), HTTP: &http.Client{Timeout: 10 * time.Minute},
		Attempts: 4, Backoff: 500 * time.Millisecond, token: token, red: (*secret.Redactor)(nil).With(TokenName, token)}
}

// TokenName names the token in redacted text: "[HF token redacted]".
const TokenName = "HF token"

// File is one file of a commit: its path in the repository and its bytes.
type File struct {
	Path    string
	Content []byte
}

// CommitInfo is what the Hub says about a commit it made.
type CommitInfo struct {
	OID string `json:"commitOid"`
	URL string `json:"commitUrl"`
}

// Error is a Hub answer with an error status. Message is the server's own
// explanation, with the token redacted.
type Error struct {
	Op      string // what lens was doing, e.g. "commit"
	Status  int
	Message string
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("hub %s: HTTP %d: %s", e.Op, e.Status, msg)
}

// TransportError is a request that got no HTTP answer (connection refused,
// DNS, timeout), with the token redacted from its text. It unwraps only to
// context.Canceled or context.DeadlineExceeded, never to the original
// error, whose text may hold the token.
type TransportError struct {
	Op    string
	msg   string
	cause error
}

func (e *TransportError) Error() string { return "hub " + e.Op + ": " + e.msg }
func (e *TransportError) Unwrap() error { return e.cause }

// ErrNoToken is returned before anything is sent when no token is given.
var ErrNoToken = errors.New("no Hugging Face token: set HF_TOKEN to a token with write access (https://huggingface.co/settings/tokens)")

// IsRemote reports whether err came from talking to the Hub, or from not
// being able to (no token, no network), as opposed to a problem with the
// run or the arguments. Scripts may carry on after a remote error.
func IsRemote(err error) bool {
	var he *Error
	var te *TransportError
	return errors.Is(err, ErrNoToken) || errors.As(err, &he) || errors.As(err, &te)
}

// redact removes the token from s, also in its URL-escaped forms.
func (c *Client) redact(s string) string { return c.red.Redact(s) }

// transportError rebuilds err without anything that could hold the token.
func (c *Client) transportError(op string, err error) error {
	te := &TransportError{Op: op, msg: c.redact(err.Error())}
	switch {
	case errors.Is(err, context.Canceled):
		te.cause = context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		te.cause = context.DeadlineExceeded
	}
	return te
}

func (c *Client) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// request is one HTTP call, retried as a whole.
type request struct {
	op      string
	method  string
	url     string
	body    []byte
	header  map[string]string
	auth    bool // send the token (only ever to the Hub's own origin)
	okCodes []int
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends r, retrying on 429, 5xx and network errors with exponential
// backoff (engine/httpx), and turns any other failure into an *Error.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	var resp *response
	retry := httpx.Retry{Attempts: c.Attempts, Backoff: c.Backoff, Max: time.Minute,
		OnRetry: func(attempt int, _ time.Duration, err error) {
			var se *httpx.StatusError
			if errors.As(err, &se) {
				c.log().Warn("hub answered with an error; retrying", "op", r.op, "attempt", attempt, "status", se.Status)
			} else {
				c.log().Warn("hub request failed; retrying", "op", r.op, "attempt", attempt, "error", c.redact(err.Error()))
			}
		}}
	n, err := retry.Do(ctx, func() error {
		var err error
		if resp, err = c.once(ctx, r); err != nil {
			return err
		}
		if resp.status < 300 || contains(r.okCodes, resp.status) {
			return nil
		}
		return &httpx.StatusError{Status: resp.status, Header: resp.header, Body: resp.body}
	})
	if err == nil {
		return resp, nil
	}
	// A retryable error at the end means the attempts ran out.
	gaveUp := httpx.Temporary(err)
	var se *httpx.StatusError
	if errors.As(err, &se) {
		herr := &Error{Op: r.op, Status: se.Status, Message: c.redact(serverMessage(&response{se.Status, se.Header, se.Body}))}
		if gaveUp {
			herr.Message = fmt.Sprintf("%s (after %d attempts)", herr.Message, n)
		}
		return nil, herr
	}
	if gaveUp {
		err = fmt.Errorf("%v (after %d attempts)", err, n)
	}
	return nil, c.transportError(r.op, err)
}

func (c *Client) once(ctx context.Context, r request) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, bytes.NewReader(r.body))
	if err != nil {
		return nil, httpx.Permanent(c.red.Error(err))
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if r.auth {
		req.Header.Set("Authorization", "Bearer "+string(c.token))
	}
	req.Header.Set("User-Agent", "lens")
	resp, err := httpx.Send(c.HTTP, req, 16<<20, c.red)
	if err != nil {
		return nil, err
	}
	c.log().Debug("hub request", "op", r.op, "method", r.method, "path", req.URL.Path, "status", resp.Status)
	return &response{status: resp.Status, header: resp.Header, body: resp.Body}, nil
}

// serverMessage extracts the Hub's explanation of an error the way
// huggingface_hub does: the X-Error-Message header, then "error" (a string
// or a list), "error_description" and "errors[].message" in a JSON body,
// else the start of the body.
func serverMessage(r *response) string {
	var parts []string
	if h := r.header.Get("X-Error-Message"); h != "" {
		parts = append(parts, h)
	}
	var body struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
		Errors      []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(r.body, &body) == nil {
		var s string
		var list []string
		switch {
		case json.Unmarshal(body.Error, &s) == nil && s != "":
			if body.Description != "" {
				s += ": " + body.Description
			}
			parts = append(parts, s)
		case json.Unmarshal(body.Error, &list) == nil:
			parts = append(parts, list...)
		case body.Description != "":
			parts = append(parts, body.Description)
		}
		for _, e := range body.Errors {
			if e.Message != "" {
				parts = append(parts, e.Message)
			}
		}
	}
	if len(parts) == 0 {
		text := strings.TrimSpace(string(r.body))
		if len(text) > 300 {
			text = text[:300] + "..."
		}
		if text != "" {
			parts = append(parts, text)
		}
	}
	return strings.Join(parts, "; ")
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

var repoPart = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidateRepo checks that repo is OWNER/NAME as the Hub spells them.
func ValidateRepo(repo string) error {
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || !repoPart.MatchString(owner) || !repoPart.MatchString(name) || len(name) > 96 ||
		strings.Contains(name, "..") || strings.HasSuffix(name, ".git") {
		return fmt.Errorf("repo %q: want OWNER/NAME (letters, digits, '.', '-', '_')", repo)
	}
	return nil
}

func (c *Client) jsonRequest(op, path string, v any, okCodes ...int) (request, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return request{}, fmt.Errorf("hub %s: %w", op, err)
	}
	return request{op: op, method: http.MethodPost, url: c.Endpoint + path, body: b,
		header: map[string]string{"Content-Type": "application/json"}, auth: true, okCodes: okCodes}, nil
}

// CreateRepo creates a model repository; one that already exists is fine.
func (c *Client) CreateRepo(ctx context.Context, repo string, private bool) error {
	if err := ValidateRepo(repo); err != nil {
		return err
	}
	owner, name, _ := strings.Cut(repo, "/")
	req, err := c.jsonRequest("create repo "+repo, "/api/repos/create",
		map[string]any{"name": name, "organization": owner, "private": private, "type": "model"}, http.StatusConflict)
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, req)
	if err != nil {
		return err
	}
	if resp.status == http.StatusConflict {
		c.log().Info("hub repo exists", "repo", repo)
	}
	return nil
}

// uploadMode is the preupload answer for one file.
type uploadMode struct {
	Path         string `json:"path"`
	UploadMode   string `json:"uploadMode"` // "regular" or "lfs"
	ShouldIgnore bool   `json:"shouldIgnore"`
}

// Commit makes one commit of files on revision of a model repository:
// it asks the Hub which files go through LFS, uploads those, then sends
// the commit with the rest inline. Like every request it is retried on
// 429 and 5xx: should a commit succeed and its answer be lost, the retry
// commits the same files again, which changes nothing in the tree.
func (c *Client) Commit(ctx context.Context, repo, revision, message string, files []File) (CommitInfo, error) {
	if err := ValidateRepo(repo); err != nil {
		return CommitInfo{}, err
	}
	if len(files) == 0 {
		return CommitInfo{}, fmt.Errorf("commit to %s: no files", repo)
	}
	if revision == "" {
		revision = "main"
	}
	seen := map[string]bool{}
	for _, f := range files {
		if f.Path == "" || strings.HasPrefix(f.Path, "/") || seen[f.Path] {
			return CommitInfo{}, fmt.Errorf("commit to %s: bad or repeated file path %q", repo, f.Path)
		}
		seen[f.Path] = true
	}
	rev := url.PathEscape(revision)
	modes, err := c.preupload(ctx, repo, rev, files)
	if err != nil {
		return CommitInfo{}, err
	}
	var lfs []File
	for _, f := range files {
		if modes[f.Path] == "lfs" {
			lfs = append(lfs, f)
		}
	}
	if len(lfs) > 0 {
		if err := c.uploadLFS(ctx, repo, revision, lfs); err != nil {
			return CommitInfo{}, err
		}
	}
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	lines := []any{map[string]any{"key": "header", "value": map[string]string{"summary": message, "description": ""}}}
	for _, f := range files {
		switch modes[f.Path] {
		case "ignore":
			c.log().Info("hub ignores file (.gitignore); not committed", "path", f.Path)
		case "lfs":
			sum := sha256.Sum256(f.Content)
			lines = append(lines, map[string]any{"key": "lfsFile", "value": map[string]any{
				"path": f.Path, "algo": "sha256", "oid": hex.EncodeToString(sum[:]), "size": len(f.Content)}})
		default:
			lines = append(lines, map[string]any{"key": "file", "value": map[string]string{
				"content": base64.StdEncoding.EncodeToString(f.Content), "path": f.Path, "encoding": "base64"}})
		}
	}
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return CommitInfo{}, fmt.Errorf("commit to %s: %w", repo, err)
		}
	}
	resp, err := c.do(ctx, request{op: "commit to " + repo, method: http.MethodPost,
		url: c.Endpoint + "/api/models/" + repo + "/commit/" + rev, body: body.Bytes(),
		header: map[string]string{"Content-Type": "application/x-ndjson"}, auth: true})
	if err != nil {
		return CommitInfo{}, err
	}
	var info CommitInfo
	if err := json.Unmarshal(resp.body, &info); err != nil || info.OID == "" {
		return CommitInfo{}, fmt.Errorf("commit to %s: the hub's answer has no commitOid (HTTP %d)", repo, resp.status)
	}
	return info, nil
}

// preupload asks the upload mode of every file: "regular", "lfs", or
// "ignore" for files the repository's .gitignore excludes.
func (c *Client) preupload(ctx context.Context, repo, rev string, files []File) (map[string]string, error) {
	type entry struct {
		Path   string `json:"path"`
		Sample string `json:"sample"`
		Size   int    `json:"size"`
	}
	var payload struct {
		Files []entry `json:"files"`
	}
	for _, f := range files {
		payload.Files = append(payload.Files, entry{Path: f.Path, Sample: base64.StdEncoding.EncodeToString(f.Content[:min(512, len(f.Content))]), Size: len(f.Content)})
	}
	op := "preupload to " + repo
	req, err := c.jsonRequest(op, "/api/models/"+repo+"/preupload/"+rev, payload)
	if err != nil {
		return nil, err
	}
	resp, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	var out struct {
		Files []uploadMode `json:"files"`
	}
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return nil, fmt.Errorf("hub %s: malformed answer: %w", op, err)
	}
	modes := map[string]string{}
	for _, m := range out.Files {
		if m.UploadMode != "regular" && m.UploadMode != "lfs" {
			return nil, fmt.Errorf("hub %s: file %s: unknown upload mode %q", op, m.Path, m.UploadMode)
		}
		modes[m.Path] = m.UploadMode
		if m.ShouldIgnore {
			modes[m.Path] = "ignore"
		}
	}
	for _, f := range files {
		if modes[f.Path] == "" {
			return nil, fmt.Errorf("hub %s: no upload mode for %s", op, f.Path)
		}
		if len(f.Content) == 0 && modes[f.Path] == "lfs" {
			// Empty files cannot go through LFS storage (huggingface_hub does the same).
			modes[f.Path] = "regular"
		}
	}
	return modes, nil
}

// lfsAction is one action of the LFS batch answer.
type lfsAction struct {
	Href   string            `json:"href"`
	Header map[string]string `json:"header"`
}

type lfsObject struct {
	OID     string `json:"oid"`
	Size    int    `json:"size"`
	Actions *struct {
		Upload *lfsAction `json:"upload"`
		Verify *lfsAction `json:"verify"`
	} `json:"actions"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// uploadLFS runs the Git LFS batch protocol (basic transfer): ask where to
// put each object, PUT the ones the Hub does not have, verify if asked.
func (c *Client) uploadLFS(ctx context.Context, repo, revision string, files []File) error {
	op := "lfs batch for " + repo
	type obj struct {
		OID  string `json:"oid"`
		Size int    `json:"size"`
	}
	byOID := map[string]File{}
	var objs []obj
	for _, f := range files {
		sum := sha256.Sum256(f.Content)
		oid := hex.EncodeToString(sum[:])
		if _, dup := byOID[oid]; !dup {
			objs = append(objs, obj{oid, len(f.Content)})
		}
		byOID[oid] = f
	}
	b, err := json.Marshal(map[string]any{"operation": "upload", "transfers": []string{"basic"}, "objects": objs,
		"hash_algo": "sha256", "ref": map[string]string{"name": revision}})
	if err != nil {
		return fmt.Errorf("hub %s: %w", op, err)
	}
	resp, err := c.do(ctx, request{op: op, method: http.MethodPost, url: c.Endpoint + "/" + repo + ".git/info/lfs/objects/batch",
		body: b, auth: true, header: map[string]string{"Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}})
	if err != nil {
		return err
	}
	var out struct {
		Objects []lfsObject `json:"objects"`
	}
	if err := json.Unmarshal(resp.body, &out); err != nil {
		return fmt.Errorf("hub %s: malformed answer: %w", op, err)
	}
	answered := map[string]bool{}
	for _, o := range out.Objects {
		f, ok := byOID[o.OID]
		if !ok {
			return fmt.Errorf("hub %s: answer names an object %s that was not asked for", op, o.OID)
		}
		answered[o.OID] = true
		if o.Error != nil {
			return &Error{Op: op + " (" + f.Path + ")", Status: o.Error.Code, Message: c.redact(o.Error.Message)}
		}
		if o.Actions == nil || o.Actions.Upload == nil {
			c.log().Info("hub already has the LFS object; not uploading", "path", f.Path, "oid", o.OID)
			continue
		}
		if err := c.putLFS(ctx, f, o); err != nil {
			return err
		}
	}
	for _, o := range objs {
		if !answered[o.OID] {
			return fmt.Errorf("hub %s: no answer for %s", op, byOID[o.OID].Path)
		}
	}
	return nil
}

func (c *Client) putLFS(ctx context.Context, f File, o lfsObject) error {
	up := o.Actions.Upload
	if _, multipart := up.Header["chunk_size"]; multipart {
		return fmt.Errorf("hub LFS upload of %s: the hub asks for a multipart upload, which lens does not implement", f.Path)
	}
	href, _, err := c.resolve(up.Href)
	if err != nil {
		return fmt.Errorf("hub LFS upload of %s: %w", f.Path, err)
	}
	// The upload href is usually presigned storage elsewhere: it gets the
	// headers the Hub chose and never the token.
	if _, err := c.do(ctx, request{op: "LFS upload of " + f.Path, method: http.MethodPut, url: href, body: f.Content, header: up.Header}); err != nil {
		return err
	}
	if v := o.Actions.Verify; v != nil {
		vhref, same, err := c.resolve(v.Href)
		if err != nil {
			return fmt.Errorf("hub LFS verify of %s: %w", f.Path, err)
		}
		b, _ := json.Marshal(map[string]any{"oid": o.OID, "size": len(f.Content)})
		h := map[string]string{"Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}
		for k, val := range v.Header {
			h[k] = val
		}
		if _, err := c.do(ctx, request{op: "LFS verify of " + f.Path, method: http.MethodPost, url: vhref, body: b, header: h, auth: same}); err != nil {
			return err
		}
	}
	return nil
}

// resolve makes href absolute against the endpoint and says whether it is
// on the endpoint's origin (the only place the token may go).
func (c *Client) resolve(href string) (string, bool, error) {
	base, err := url.Parse(c.Endpoint + "/")
	if err != nil {
		return "", false, fmt.Errorf("endpoint: %w", err)
	}
	u, err := base.Parse(href)
	if err != nil {
		return "", false, fmt.Errorf("href: %s", c.redact(err.Error()))
	}
	return u.String(), u.Scheme == base.Scheme && u.Host == base.Host, nil
}
