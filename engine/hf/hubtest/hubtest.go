// Package hubtest is a fake Hugging Face Hub for tests: an httptest server
// with the endpoints package hf uses (repo create, preupload, LFS batch,
// LFS storage PUT and verify, NDJSON commit). It checks every request the
// way the real Hub would (token, payload shapes, base64 content, LFS
// sha256 and size against the bytes stored), records what a client did
// wrong in Problems, keeps the committed files, and can be told to fail
// the next request on a route.
package hubtest

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Routes, as named by Fail and Request.Route.
const (
	RouteCreate    = "create"
	RoutePreupload = "preupload"
	RouteBatch     = "batch"
	RouteUpload    = "upload" // LFS storage PUT
	RouteVerify    = "verify"
	RouteCommit    = "commit"
)

// UploadHeader is the header the fake's LFS batch answer asks uploads to
// carry, so the test sees that the client sent the headers it was given.
const UploadHeader = "X-Lens-Upload-Check"

// Hub is a running fake Hub.
type Hub struct {
	URL   string
	Token string
	// LFSThreshold: files at least this big, and every *.safetensors and
	// *.bin, are sent through LFS, as the Hub's default .gitattributes and
	// its 10 MB rule do (default 10 MiB).
	LFSThreshold int

	srv      *httptest.Server
	mu       sync.Mutex
	repos    map[string]*Repo
	objects  map[string][]byte // verified LFS objects by sha256
	pending  map[string][]byte // uploaded, not verified yet
	asked    map[string]int    // oid -> size announced in a batch request
	samples  map[string][]byte // repo + "\x00" + path -> preupload sample
	fail     map[string][]failure
	requests []Request
	problems []string
	seq      int
}

// Repo is a repository's state.
type Repo struct {
	ID      string
	Private bool
	Files   map[string][]byte // the tree after the last commit
	Commits []Commit
}

// Commit is one commit as received.
type Commit struct {
	Revision    string
	Summary     string
	Description string
	OID         string
	Files       map[string][]byte // files of this commit only
	LFS         []string          // paths committed as LFS pointers
}

// Request is one request as seen by the fake.
type Request struct {
	Route, Method, Path string
	Auth                string // "ok", "missing" or "wrong"
	Status              int
}

type failure struct {
	status int
	body   string
}

// New starts a fake Hub that accepts token; it stops when t ends.
func New(t testing.TB, token string) *Hub {
	h := &Hub{Token: token, LFSThreshold: 10 << 20, repos: map[string]*Repo{}, objects: map[string][]byte{},
		pending: map[string][]byte{}, asked: map[string]int{}, samples: map[string][]byte{}, fail: map[string][]failure{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/repos/create", h.route(RouteCreate, true, h.create))
	mux.HandleFunc("POST /api/models/{owner}/{name}/preupload/{rev}", h.route(RoutePreupload, true, h.preupload))
	mux.HandleFunc("POST /{owner}/{repo}/info/lfs/objects/batch", h.route(RouteBatch, true, h.batch))
	mux.HandleFunc("PUT /lfs-storage/{oid}", h.route(RouteUpload, false, h.upload))
	mux.HandleFunc("POST /lfs-verify/{oid}", h.route(RouteVerify, true, h.verify))
	mux.HandleFunc("POST /api/models/{owner}/{name}/commit/{rev}", h.route(RouteCommit, true, h.commit))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.problem("request to an endpoint the Hub client should not use: %s %s", r.Method, r.URL.Path)
		writeErr(w, http.StatusNotFound, "not found")
	})
	h.srv = httptest.NewServer(mux)
	h.URL = h.srv.URL
	t.Cleanup(h.srv.Close)
	return h
}

// Close stops the server (New also arranges that).
func (h *Hub) Close() { h.srv.Close() }

// Fail makes the next request on route answer status with body, before
// any other check; calls queue up.
func (h *Hub) Fail(route string, status int, body string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail[route] = append(h.fail[route], failure{status, body})
}

// Repo returns a copy of a repository's state.
func (h *Hub) Repo(id string) (Repo, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.repos[id]
	if !ok {
		return Repo{}, false
	}
	out := *r
	out.Files = map[string][]byte{}
	for k, v := range r.Files {
		out.Files[k] = v
	}
	out.Commits = append([]Commit(nil), r.Commits...)
	return out, true
}

// Requests returns every request received, in order.
func (h *Hub) Requests() []Request {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Request(nil), h.requests...)
}

// Count is how many requests went to route.
func (h *Hub) Count(route string) int {
	n := 0
	for _, r := range h.Requests() {
		if r.Route == route {
			n++
		}
	}
	return n
}

// Problems lists what clients did that the real Hub would refuse or that
// leaks the token; a correct client leaves it empty.
func (h *Hub) Problems() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.problems...)
}

func (h *Hub) problem(format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.problems = append(h.problems, fmt.Sprintf(format, args...))
}

// statusWriter remembers the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// route wraps a handler with the request log, injected failures and the
// token check (auth: the route needs the token; storage must not get it).
func (h *Hub) route(name string, auth bool, fn func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: 200}
		state := "missing"
		if a := r.Header.Get("Authorization"); a == "Bearer "+h.Token {
			state = "ok"
		} else if a != "" {
			state = "wrong"
		}
		defer func() {
			h.mu.Lock()
			h.requests = append(h.requests, Request{Route: name, Method: r.Method, Path: r.URL.Path, Auth: state, Status: sw.status})
			h.mu.Unlock()
		}()
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeErr(sw, http.StatusBadRequest, "read body: "+err.Error())
			return
		}
		h.mu.Lock()
		var f *failure
		if q := h.fail[name]; len(q) > 0 {
			f, h.fail[name] = &q[0], q[1:]
		}
		h.mu.Unlock()
		if f != nil {
			if strings.HasPrefix(f.body, "{") {
				sw.Header().Set("Content-Type", "application/json")
			}
			sw.WriteHeader(f.status)
			io.WriteString(sw, f.body)
			return
		}
		switch {
		case !auth && state != "missing":
			h.problem("%s %s: the token was sent to LFS storage", r.Method, r.URL.Path)
			writeErr(sw, http.StatusBadRequest, "storage does not take Authorization")
			return
		case auth && state != "ok":
			writeErr(sw, http.StatusUnauthorized, "Invalid credentials in Authorization header")
			return
		}
		fn(sw, r, body)
	}
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// bad answers 400 and records the client's mistake.
func (h *Hub) bad(w http.ResponseWriter, r *http.Request, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.problem("%s %s: %s", r.Method, r.URL.Path, msg)
	writeErr(w, http.StatusBadRequest, msg)
}

func (h *Hub) create(w http.ResponseWriter, r *http.Request, body []byte) {
	var p struct {
		Name         string `json:"name"`
		Organization string `json:"organization"`
		Private      *bool  `json:"private"`
		Type         string `json:"type"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Name == "" || p.Organization == "" || p.Private == nil || p.Type != "model" {
		h.bad(w, r, "create wants name, organization, private and type model; got %s", body)
		return
	}
	id := p.Organization + "/" + p.Name
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.repos[id]; ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusConflict)
		fmt.Fprintf(w, `{"error":"You already created this model repo","url":%q}`, h.URL+"/"+id)
		return
	}
	h.repos[id] = &Repo{ID: id, Private: *p.Private, Files: map[string][]byte{}}
	writeJSON(w, http.StatusOK, map[string]string{"url": h.URL + "/" + id, "name": id})
}

func (h *Hub) repo(r *http.Request) (*Repo, string) {
	id := r.PathValue("owner") + "/" + r.PathValue("name")
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.repos[id], id
}

func (h *Hub) preupload(w http.ResponseWriter, r *http.Request, body []byte) {
	repo, id := h.repo(r)
	if repo == nil {
		writeErr(w, http.StatusNotFound, "Repository not found")
		return
	}
	var p struct {
		Files []struct {
			Path   string `json:"path"`
			Sample string `json:"sample"`
			Size   *int   `json:"size"`
		} `json:"files"`
	}
	if err := json.Unmarshal(body, &p); err != nil || len(p.Files) == 0 {
		h.bad(w, r, "preupload wants files; got %s", body)
		return
	}
	type mode struct {
		Path         string  `json:"path"`
		UploadMode   string  `json:"uploadMode"`
		ShouldIgnore bool    `json:"shouldIgnore"`
		OID          *string `json:"oid"`
	}
	var out []mode
	for _, f := range p.Files {
		sample, err := base64.StdEncoding.DecodeString(f.Sample)
		if err != nil || f.Path == "" || f.Size == nil || len(sample) > 512 || len(sample) > *f.Size || (len(sample) < 512 && len(sample) != *f.Size) {
			h.bad(w, r, "preupload entry %q: want path, base64 sample of the first 512 bytes and size", f.Path)
			return
		}
		h.mu.Lock()
		h.samples[id+"\x00"+f.Path] = sample
		h.mu.Unlock()
		m := "regular"
		if *f.Size >= h.LFSThreshold || strings.HasSuffix(f.Path, ".safetensors") || strings.HasSuffix(f.Path, ".bin") {
			m = "lfs"
		}
		out = append(out, mode{Path: f.Path, UploadMode: m})
	}
	writeJSON(w, http.StatusOK, map[string]any{"files": out, "commitOid": "0000000000000000000000000000000000000000"})
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (h *Hub) batch(w http.ResponseWriter, r *http.Request, body []byte) {
	id := r.PathValue("owner") + "/" + strings.TrimSuffix(r.PathValue("repo"), ".git")
	if !strings.HasSuffix(r.PathValue("repo"), ".git") {
		h.bad(w, r, "the LFS batch URL is {endpoint}/{repo}.git/info/lfs/objects/batch")
		return
	}
	h.mu.Lock()
	_, exists := h.repos[id]
	h.mu.Unlock()
	if !exists {
		writeErr(w, http.StatusNotFound, "Repository not found")
		return
	}
	if !strings.Contains(r.Header.Get("Content-Type"), "application/vnd.git-lfs+json") || !strings.Contains(r.Header.Get("Accept"), "application/vnd.git-lfs+json") {
		h.bad(w, r, "LFS batch wants Accept and Content-Type application/vnd.git-lfs+json")
		return
	}
	var p struct {
		Operation string   `json:"operation"`
		Transfers []string `json:"transfers"`
		HashAlgo  string   `json:"hash_algo"`
		Objects   []struct {
			OID  string `json:"oid"`
			Size int    `json:"size"`
		} `json:"objects"`
	}
	if err := json.Unmarshal(body, &p); err != nil || p.Operation != "upload" || p.HashAlgo != "sha256" || len(p.Objects) == 0 {
		h.bad(w, r, "LFS batch wants operation upload, hash_algo sha256 and objects; got %s", body)
		return
	}
	basic := len(p.Transfers) == 0
	for _, t := range p.Transfers {
		basic = basic || t == "basic"
	}
	if !basic {
		h.bad(w, r, "LFS batch transfers %v lack basic", p.Transfers)
		return
	}
	var out []map[string]any
	for _, o := range p.Objects {
		if !sha256Hex.MatchString(o.OID) || o.Size <= 0 {
			h.bad(w, r, "LFS object %q size %d: want a sha256 hex oid and a positive size", o.OID, o.Size)
			return
		}
		h.mu.Lock()
		_, have := h.objects[o.OID]
		h.asked[o.OID] = o.Size
		h.mu.Unlock()
		obj := map[string]any{"oid": o.OID, "size": o.Size}
		if !have {
			obj["actions"] = map[string]any{
				"upload": map[string]any{"href": h.URL + "/lfs-storage/" + o.OID, "header": map[string]string{UploadHeader: o.OID}},
				"verify": map[string]any{"href": h.URL + "/lfs-verify/" + o.OID},
			}
		}
		out = append(out, obj)
	}
	w.Header().Set("Content-Type", "application/vnd.git-lfs+json")
	json.NewEncoder(w).Encode(map[string]any{"transfer": "basic", "objects": out})
}

func (h *Hub) upload(w http.ResponseWriter, r *http.Request, body []byte) {
	oid := r.PathValue("oid")
	if r.Header.Get(UploadHeader) != oid {
		h.bad(w, r, "upload lacks the header %s the batch answer gave", UploadHeader)
		return
	}
	sum := sha256.Sum256(body)
	h.mu.Lock()
	size, asked := h.asked[oid]
	h.mu.Unlock()
	if !asked || hex.EncodeToString(sum[:]) != oid || len(body) != size {
		h.bad(w, r, "uploaded %d bytes with sha256 %x for oid %s of announced size %d", len(body), sum, oid, size)
		return
	}
	h.mu.Lock()
	h.pending[oid] = body
	h.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (h *Hub) verify(w http.ResponseWriter, r *http.Request, body []byte) {
	oid := r.PathValue("oid")
	var p struct {
		OID  string `json:"oid"`
		Size int    `json:"size"`
	}
	h.mu.Lock()
	data, ok := h.pending[oid]
	h.mu.Unlock()
	if err := json.Unmarshal(body, &p); err != nil || p.OID != oid || !ok || p.Size != len(data) {
		h.bad(w, r, "verify %s: body %s does not match an uploaded object", oid, body)
		return
	}
	h.mu.Lock()
	h.objects[oid] = data
	delete(h.pending, oid)
	h.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"message": "ok"})
}

func (h *Hub) commit(w http.ResponseWriter, r *http.Request, body []byte) {
	repo, id := h.repo(r)
	if repo == nil {
		writeErr(w, http.StatusNotFound, "Repository not found")
		return
	}
	if r.Header.Get("Content-Type") != "application/x-ndjson" {
		h.bad(w, r, "commit Content-Type is %q, want application/x-ndjson", r.Header.Get("Content-Type"))
		return
	}
	c := Commit{Revision: r.PathValue("rev"), Files: map[string][]byte{}}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 64<<20)
	line := 0
	for sc.Scan() {
		line++
		var item struct {
			Key   string          `json:"key"`
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(sc.Bytes(), &item); err != nil {
			h.bad(w, r, "commit line %d is not JSON: %v", line, err)
			return
		}
		if (line == 1) != (item.Key == "header") {
			h.bad(w, r, "commit line %d has key %q; the header comes first, once", line, item.Key)
			return
		}
		switch item.Key {
		case "header":
			var v struct {
				Summary     string  `json:"summary"`
				Description *string `json:"description"`
			}
			if err := json.Unmarshal(item.Value, &v); err != nil || v.Summary == "" || v.Description == nil {
				h.bad(w, r, "commit header wants summary and description; got %s", item.Value)
				return
			}
			c.Summary, c.Description = v.Summary, *v.Description
		case "file":
			var v struct{ Content, Path, Encoding string }
			if err := json.Unmarshal(item.Value, &v); err != nil || v.Path == "" || v.Encoding != "base64" {
				h.bad(w, r, "commit file wants content, path and encoding base64; got %.200s", item.Value)
				return
			}
			b, err := base64.StdEncoding.DecodeString(v.Content)
			if err != nil {
				h.bad(w, r, "commit file %s: content is not base64: %v", v.Path, err)
				return
			}
			if !h.sampleMatches(id, v.Path, b) {
				h.bad(w, r, "commit file %s: content does not start with its preupload sample", v.Path)
				return
			}
			c.Files[v.Path] = b
		case "lfsFile":
			var v struct {
				Path, Algo, OID string
				Size            int
			}
			if err := json.Unmarshal(item.Value, &v); err != nil || v.Path == "" || v.Algo != "sha256" {
				h.bad(w, r, "commit lfsFile wants path, algo sha256, oid and size; got %s", item.Value)
				return
			}
			h.mu.Lock()
			data, ok := h.objects[v.OID]
			h.mu.Unlock()
			if !ok || len(data) != v.Size {
				h.bad(w, r, "commit lfsFile %s: no stored LFS object %s of size %d", v.Path, v.OID, v.Size)
				return
			}
			if !h.sampleMatches(id, v.Path, data) {
				h.bad(w, r, "commit lfsFile %s: object does not start with its preupload sample", v.Path)
				return
			}
			c.Files[v.Path] = data
			c.LFS = append(c.LFS, v.Path)
		default:
			h.bad(w, r, "commit line %d: unknown key %q", line, item.Key)
			return
		}
	}
	if line < 2 {
		h.bad(w, r, "commit has no operations")
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seq++
	sum := sha1.Sum(fmt.Appendf(nil, "%s %d %s", id, h.seq, c.Summary))
	c.OID = hex.EncodeToString(sum[:])
	repo.Commits = append(repo.Commits, c)
	for p, b := range c.Files {
		repo.Files[p] = b
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "commitOid": c.OID, "commitUrl": h.URL + "/" + id + "/commit/" + c.OID})
}

func (h *Hub) sampleMatches(repo, path string, content []byte) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.samples[repo+"\x00"+path]
	return ok && bytes.HasPrefix(content, s)
}
