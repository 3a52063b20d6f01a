// Package wandbtest is a stand-in W&B server for tests: the GraphQL calls
// lens makes (viewer, upsertBucket, the RunResumeStatus query with
// historyLineCount and historyTail) and the file stream, with HTTP basic
// auth checked, every history line kept per run, offsets checked, and
// faults to inject. It is not a W&B implementation beyond that.
package wandbtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Run is what the server holds for one W&B run.
type Run struct {
	Entity, Project, Name string
	DisplayName           string
	Config                map[string]any // as sent: {"key": {"value": v}}
	Tags                  []string
	Lines                 []string // wandb-history.jsonl
	Summary               string
	Complete              bool
	ExitCode              int
	// Overlaps counts history lines sent at an offset the server already
	// had (a client sending twice); Gaps counts offsets past the end.
	Overlaps, Gaps int
}

// Fault is what the server does with one file_stream request.
type Fault int

// Faults.
const (
	OK            Fault = iota
	Fail500             // answer 500 without taking the lines
	TakeThenDrop        // take the lines, then close the connection unanswered
	DropUntaken         // close the connection without taking the lines
	Unauthorized        // answer 401
	EchoAuth500         // answer 500 with the request's Authorization header in the body
	TooManyThenOK       // answer 429 once (with Retry-After 0), then behave
)

var faultNames = [...]string{"OK", "Fail500", "TakeThenDrop", "DropUntaken", "Unauthorized", "EchoAuth500", "TooManyThenOK"}

func (f Fault) String() string {
	if int(f) < len(faultNames) {
		return faultNames[f]
	}
	return fmt.Sprintf("Fault(%d)", int(f))
}

// Server is a running stand-in W&B server.
type Server struct {
	*httptest.Server
	Key    string // the only API key accepted
	Entity string // the viewer's default entity
	// NoTail makes the resume query answer without historyTail, so that
	// clients must rely on historyLineCount alone.
	NoTail bool
	// Fault, when set, decides the fate of each file_stream request from
	// the run's line count before it and the lines it carries.
	Fault func(run *Run, lines int) Fault

	mu       sync.Mutex
	runs     map[string]*Run
	auths    int // requests with a wrong or missing key
	requests int
}

// New starts a server accepting key; Close it when done.
func New(key string) *Server {
	s := &Server{Key: key, Entity: "lens-user", runs: map[string]*Run{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /graphql", s.graphql)
	mux.HandleFunc("POST /files/{entity}/{project}/{run}/file_stream", s.fileStream)
	s.Server = httptest.NewServer(mux)
	return s
}

func runKey(entity, project, name string) string { return entity + "/" + project + "/" + name }

// Run returns a copy of run name in entity/project, or nil.
func (s *Server) Run(entity, project, name string) *Run {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs[runKey(entity, project, name)]
	if r == nil {
		return nil
	}
	c := *r
	c.Lines = append([]string(nil), r.Lines...)
	return &c
}

// Runs is how many runs the server has.
func (s *Server) Runs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.runs)
}

// BadAuth is how many requests came with a wrong or missing key.
func (s *Server) BadAuth() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths
}

// Requests is how many requests arrived.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// SetFault replaces Fault while requests may be running.
func (s *Server) SetFault(f func(run *Run, lines int) Fault) {
	s.mu.Lock()
	s.Fault = f
	s.mu.Unlock()
}

func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	user, pass, ok := r.BasicAuth()
	if ok && user == "api" && pass == s.Key {
		return true
	}
	s.mu.Lock()
	s.auths++
	s.mu.Unlock()
	http.Error(w, `{"errors":[{"message":"user is not logged in"}]}`, http.StatusUnauthorized)
	return false
}

func (s *Server) graphql(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	var req struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	str := func(k string) string { v, _ := req.Variables[k].(string); return v }
	var data any
	switch {
	case strings.Contains(req.Query, "upsertBucket"):
		entity := str("entity")
		if entity == "" {
			entity = s.Entity
		}
		s.mu.Lock()
		k := runKey(entity, str("project"), str("name"))
		run, existed := s.runs[k]
		if !existed {
			run = &Run{Entity: entity, Project: str("project"), Name: str("name")}
			s.runs[k] = run
		}
		if d := str("displayName"); d != "" {
			run.DisplayName = d
		}
		if c := str("config"); c != "" {
			run.Config = nil
			if err := json.Unmarshal([]byte(c), &run.Config); err != nil {
				s.mu.Unlock()
				writeJSON(w, map[string]any{"errors": []any{map[string]any{"message": "config: " + err.Error()}}})
				return
			}
		}
		if tags, ok := req.Variables["tags"].([]any); ok {
			run.Tags = nil
			for _, t := range tags {
				run.Tags = append(run.Tags, fmt.Sprint(t))
			}
		}
		n := len(run.Lines)
		s.mu.Unlock()
		data = map[string]any{"upsertBucket": map[string]any{
			"bucket": map[string]any{
				"id": k, "name": str("name"), "displayName": run.DisplayName,
				"project":          map[string]any{"id": "p", "name": str("project"), "entity": map[string]any{"id": "e", "name": entity}},
				"historyLineCount": n,
			},
			"inserted": !existed,
		}}
	case strings.Contains(req.Query, "RunResumeStatus"):
		s.mu.Lock()
		run := s.runs[runKey(str("entity"), str("project"), str("name"))]
		var bucket any
		if run != nil {
			b := map[string]any{"id": "b", "name": run.Name, "historyLineCount": len(run.Lines)}
			if !s.NoTail {
				tail := run.Lines[max(0, len(run.Lines)-10):]
				tb, _ := json.Marshal(append([]string{}, tail...))
				b["historyTail"] = string(tb)
			}
			bucket = b
		}
		s.mu.Unlock()
		data = map[string]any{"model": map[string]any{"id": "p", "name": str("project"),
			"entity": map[string]any{"id": "e", "name": str("entity")}, "bucket": bucket}}
	case strings.Contains(req.Query, "viewer"):
		data = map[string]any{"viewer": map[string]any{"id": "v", "entity": s.Entity, "username": s.Entity}}
	default:
		writeJSON(w, map[string]any{"errors": []any{map[string]any{"message": "unknown query"}}})
		return
	}
	writeJSON(w, map[string]any{"data": data})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (s *Server) fileStream(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) {
		return
	}
	var req struct {
		Files map[string]struct {
			Offset  int      `json:"offset"`
			Content []string `json:"content"`
		} `json:"files"`
		Complete *bool `json:"complete"`
		ExitCode *int  `json:"exitcode"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	run := s.runs[runKey(r.PathValue("entity"), r.PathValue("project"), r.PathValue("run"))]
	if run == nil {
		s.mu.Unlock()
		http.Error(w, "no such run", http.StatusNotFound)
		return
	}
	hist := req.Files["wandb-history.jsonl"]
	fault := OK
	if s.Fault != nil {
		fault = s.Fault(run, len(hist.Content))
	}
	if fault == TooManyThenOK {
		s.Fault = nil
	}
	s.mu.Unlock()
	switch fault {
	case Fail500:
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	case DropUntaken:
		drop(w)
		return
	case Unauthorized:
		http.Error(w, "bad key", http.StatusUnauthorized)
		return
	case EchoAuth500:
		user, pass, _ := r.BasicAuth()
		http.Error(w, "internal error; request had Authorization: "+r.Header.Get("Authorization")+" ("+user+":"+pass+")", http.StatusInternalServerError)
		return
	case TooManyThenOK:
		w.Header().Set("Retry-After", "0")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	}
	s.mu.Lock()
	for i, l := range hist.Content {
		at := hist.Offset + i
		switch {
		case at < len(run.Lines):
			run.Overlaps++
			run.Lines[at] = l
		case at == len(run.Lines):
			run.Lines = append(run.Lines, l)
		default:
			run.Gaps++
			run.Lines = append(run.Lines, l)
		}
	}
	if sum, ok := req.Files["wandb-summary.json"]; ok && len(sum.Content) > 0 {
		run.Summary = sum.Content[len(sum.Content)-1]
	}
	if req.Complete != nil && *req.Complete {
		run.Complete = true
		if req.ExitCode != nil {
			run.ExitCode = *req.ExitCode
		}
	}
	s.mu.Unlock()
	if fault == TakeThenDrop {
		drop(w)
		return
	}
	writeJSON(w, map[string]any{"exitcode": nil, "limits": map[string]any{}})
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// AuthHeader is the basic-auth header value of key, for tests that look
// for it where it must not be.
func AuthHeader(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte("api:"+key))
}
