// Package ui serves `lens ui`: a single-page, read-only web view of a store
// (runs table, run pages, comparisons, sweeps) that refreshes while runs
// train. The page and its charting library (uPlot) are embedded; every
// request is answered from a read-only view of the store (see source), so
// no endpoint can change it.
package ui

import (
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"lens/kv"
)

//go:embed assets
var assets embed.FS

// Options configure a Server.
type Options struct {
	// Store is the store directory.
	Store string
	// Token, when set, must come with every request: as the query parameter
	// token (which also sets a cookie for the page's own requests), the
	// cookie lens_token, or an "Authorization: Bearer" header.
	Token string
	// Refresh is how long one view of the store answers requests before
	// the next request opens a fresh one; 0 means 500 ms.
	Refresh time.Duration
	// Logger receives the store's notes; nil discards them.
	Logger *slog.Logger
}

// Server is the `lens ui` HTTP handler.
type Server struct {
	opts    Options
	src     *source
	mux     *http.ServeMux
	flats   flatCache
	answers answerCache
}

// New returns a server for the store in opts.Store. It opens nothing yet:
// the store is read when requests come.
func New(opts Options) *Server {
	if opts.Refresh <= 0 {
		opts.Refresh = 500 * time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts, src: &source{dir: opts.Store, ttl: opts.Refresh, log: opts.Logger}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /assets/{name}", s.asset)
	mux.HandleFunc("GET /api/runs", s.apiRuns)
	mux.HandleFunc("GET /api/run/{id}", s.apiRun)
	mux.HandleFunc("GET /api/run/{id}/metric", s.apiMetric)
	mux.HandleFunc("GET /api/run/{id}/collect", s.apiCollect)
	mux.HandleFunc("GET /api/run/{id}/findings", s.apiFindings)
	mux.HandleFunc("GET /api/compare", s.apiCompare)
	mux.HandleFunc("GET /api/sweeps", s.apiSweeps)
	s.mux = mux
	return s
}

// Close releases the store.
func (s *Server) Close() { s.src.close() }

// CheckAddr refuses to listen on an address other than loopback without a
// token: anyone who can reach the port could read every run.
func CheckAddr(addr, token string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--addr %q: %w", addr, err)
	}
	if token != "" || isLoopback(host) {
		return nil
	}
	suggest, err := NewToken()
	if err != nil {
		return err
	}
	return fmt.Errorf("--addr %s is not a loopback address: anyone who reaches it could read the store, so a token is required; pass --token, for example --token %s", addr, suggest)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NewToken returns a random token (128 bits, hex).
func NewToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

const cookieName = "lens_token"

// ServeHTTP checks the token and the method, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
	if s.opts.Token != "" {
		if !s.authorized(r) {
			http.Error(w, "401 unauthorized: this lens ui needs its token (open the URL it printed)", http.StatusUnauthorized)
			return
		}
		if r.URL.Query().Get("token") != "" {
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.opts.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			if r.URL.Path == "/" && r.Method == http.MethodGet {
				// Drop the token from the address bar and history; the
				// cookie carries it from now on (the #view is kept).
				http.Redirect(w, r, "/", http.StatusSeeOther)
				return
			}
		}
	} else if host, _, err := net.SplitHostPort(r.Host); err != nil || !isLoopback(host) {
		// Without a token we listen on loopback only; a request naming
		// another host is a DNS-rebinding page trying to read the store.
		http.Error(w, "403 forbidden: host "+r.Host+" is not loopback", http.StatusForbidden)
		return
	}
	if p := r.URL.EscapedPath(); path.Clean(p) != p && p != "/" || strings.Contains(strings.ToLower(p), "%2e") || strings.Contains(p, "%00") {
		// Dot segments, doubled slashes or encoded dots: no asset or API
		// path has them, so they are a traversal attempt, not a redirect.
		http.Error(w, "400 bad request: path "+strconv.Quote(p), http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed: lens ui is read-only", http.StatusMethodNotAllowed)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authorized(r *http.Request) bool {
	want := []byte(s.opts.Token)
	var got string
	if t := r.URL.Query().Get("token"); t != "" {
		got = t
	} else if c, err := r.Cookie(cookieName); err == nil {
		got = c.Value
	} else if h, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = h
	}
	return subtle.ConstantTimeCompare([]byte(got), want) == 1
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	if err := checkParams(r, "token"); err != nil {
		httpError(w, err)
		return
	}
	serveAsset(w, r, "index.html")
}

var assetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !assetName.MatchString(name) || strings.Contains(name, "..") {
		httpError(w, &badRequest{fmt.Sprintf("asset name %q", name)})
		return
	}
	if err := checkParams(r, "token", "v"); err != nil {
		httpError(w, err)
		return
	}
	serveAsset(w, r, name)
}

func serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	b, err := fs.ReadFile(assets, path.Join("assets", name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// badRequest is a malformed request: 400 with its message.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func httpError(w http.ResponseWriter, err error) {
	var br *badRequest
	var le *kv.LockedError
	switch {
	case errors.As(err, &br):
		http.Error(w, "400 bad request: "+br.msg, http.StatusBadRequest)
	case errors.Is(err, kv.ErrNotFound):
		http.Error(w, "404 not found: "+err.Error(), http.StatusNotFound)
	case errors.As(err, &le):
		http.Error(w, "503 store unavailable: "+err.Error(), http.StatusServiceUnavailable)
	default:
		http.Error(w, "500 internal error: "+err.Error(), http.StatusInternalServerError)
	}
}

// checkParams rejects query parameters other than allowed, and repeated ones.
func checkParams(r *http.Request, allowed ...string) error {
	q, err := parseQuery(r)
	if err != nil {
		return err
	}
	for k, v := range q {
		if !contains1(allowed, k) {
			return &badRequest{fmt.Sprintf("unknown query parameter %q", k)}
		}
		if len(v) > 1 {
			return &badRequest{fmt.Sprintf("query parameter %q given %d times", k, len(v))}
		}
	}
	return nil
}

func parseQuery(r *http.Request) (map[string][]string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &badRequest{fmt.Sprintf("query: %v", err)}
	}
	return q, nil
}

var runID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func pathRun(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !runID.MatchString(id) {
		return "", &badRequest{fmt.Sprintf("run id %q: want letters, digits, '.', '_' or '-'", id)}
	}
	return id, nil
}

func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, &badRequest{fmt.Sprintf("%s=%q: want an integer in %d..%d", name, v, lo, hi)}
	}
	return n, nil
}

func floatParam(r *http.Request, name string, def float64) (float64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) {
		return 0, &badRequest{fmt.Sprintf("%s=%q: want a number", name, v)}
	}
	return f, nil
}

// reply reads the store and writes fn's result as JSON. While nobody writes
// the store its answers are kept, keyed by request and by the fingerprint
// of the store's files, so a page polling an idle store does not open it
// (and take its lock) every second.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, fn func(st *kv.Store) (any, error)) {
	key := r.URL.Path + "?" + r.URL.RawQuery
	fp := s.src.fingerprint()
	b, ok := s.answers.get(key, fp)
	if !ok {
		var out any
		direct, err := s.src.with(func(st *kv.Store) error {
			var err error
			out, err = fn(st)
			return err
		})
		if err != nil {
			httpError(w, err)
			return
		}
		if b, err = json.Marshal(out); err != nil {
			httpError(w, err)
			return
		}
		if direct && fp != "" && fp == s.src.fingerprint() {
			s.answers.put(key, fp, b)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// answerCache holds the JSON answers given from one state of an idle store.
type answerCache struct {
	mu    sync.Mutex
	fp    string
	m     map[string][]byte
	bytes int
}

// maxCached bounds the bytes of answers kept for one state of the store.
const maxCached = 64 << 20

func (c *answerCache) get(key, fp string) ([]byte, bool) {
	if fp == "" {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fp != fp {
		return nil, false
	}
	b, ok := c.m[key]
	return b, ok
}

func (c *answerCache) put(key, fp string, b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fp != fp || c.bytes+len(b) > maxCached {
		c.fp, c.m, c.bytes = fp, map[string][]byte{}, 0
	}
	c.m[key] = b
	c.bytes += len(b)
}

func (s *Server) apiRuns(w http.ResponseWriter, r *http.Request) {
	if err := checkParams(r, "token", "where", "columns"); err != nil {
		httpError(w, err)
		return
	}
	var where *Filter
	if e := strings.TrimSpace(r.URL.Query().Get("where")); e != "" {
		f, err := ParseFilter(e)
		if err != nil {
			httpError(w, &badRequest{err.Error()})
			return
		}
		where = f
	}
	var cols []string
	if c := r.URL.Query().Get("columns"); c != "" {
		cols = strings.Split(c, ",")
		if len(cols) > 64 {
			httpError(w, &badRequest{"columns: at most 64"})
			return
		}
	}
	s.reply(w, r, func(st *kv.Store) (any, error) { return runsPage(st, where, cols, &s.flats) })
}

func (s *Server) apiRun(w http.ResponseWriter, r *http.Request) {
	id, err := pathRun(r)
	if err == nil {
		err = checkParams(r, "token", "series", "width")
	}
	var names []string
	if v := r.URL.Query().Get("series"); v != "" && err == nil {
		if names = strings.Split(v, ","); len(names) > 64 {
			err = &badRequest{"series: at most 64 names"}
		}
	}
	width := 0
	if err == nil {
		width, err = intParam(r, "width", 1000, 1, maxWidth)
	}
	if err != nil {
		httpError(w, err)
		return
	}
	// The series ride along so that a live page refreshes from one view
	// of the store per poll.
	s.reply(w, r, func(st *kv.Store) (any, error) {
		p, err := runPage(st, id)
		if err != nil || len(names) == 0 {
			return p, err
		}
		p.Series = map[string]*Series{}
		for _, n := range names {
			sr, err := series(st, id, n, math.Inf(-1), math.Inf(1), width)
			if errors.Is(err, kv.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			p.Series[n] = sr
		}
		return p, nil
	})
}

// maxWidth bounds the buckets a chart may ask for.
const maxWidth = 8192

func (s *Server) apiMetric(w http.ResponseWriter, r *http.Request) {
	id, err := pathRun(r)
	if err == nil {
		err = checkParams(r, "token", "name", "width", "from", "to")
	}
	if err != nil {
		httpError(w, err)
		return
	}
	name := r.URL.Query().Get("name")
	if name == "" || len(name) > 256 {
		httpError(w, &badRequest{"name: want a metric name"})
		return
	}
	width, err := intParam(r, "width", 1000, 1, maxWidth)
	var from, to float64
	if err == nil {
		from, err = floatParam(r, "from", math.Inf(-1))
	}
	if err == nil {
		to, err = floatParam(r, "to", math.Inf(1))
	}
	if err == nil && from > to {
		err = &badRequest{"from > to"}
	}
	if err != nil {
		httpError(w, err)
		return
	}
	s.reply(w, r, func(st *kv.Store) (any, error) { return series(st, id, name, from, to, width) })
}

func (s *Server) apiCollect(w http.ResponseWriter, r *http.Request) {
	id, err := pathRun(r)
	if err == nil {
		err = checkParams(r, "token")
	}
	if err != nil {
		httpError(w, err)
		return
	}
	s.reply(w, r, func(st *kv.Store) (any, error) {
		if _, err := st.GetRun(id); err != nil {
			return nil, err
		}
		p, err := collectPanels(st, id)
		if p == nil {
			p = []Panel{}
		}
		return p, err
	})
}

func (s *Server) apiFindings(w http.ResponseWriter, r *http.Request) {
	id, err := pathRun(r)
	if err == nil {
		err = checkParams(r, "token")
	}
	if err != nil {
		httpError(w, err)
		return
	}
	s.reply(w, r, func(st *kv.Store) (any, error) { return findings(st, id) })
}

func (s *Server) apiCompare(w http.ResponseWriter, r *http.Request) {
	if err := checkParams(r, "token", "ids", "metric", "module", "width"); err != nil {
		httpError(w, err)
		return
	}
	q := r.URL.Query()
	ids := strings.Split(q.Get("ids"), ",")
	if len(ids) < 2 || len(ids) > 16 {
		httpError(w, &badRequest{"ids: want 2 to 16 run ids, comma-separated"})
		return
	}
	for _, id := range ids {
		if !runID.MatchString(id) {
			httpError(w, &badRequest{fmt.Sprintf("ids: run id %q", id)})
			return
		}
	}
	metric := q.Get("metric")
	if metric == "" {
		metric = "loss"
	}
	width, err := intParam(r, "width", 1000, 1, maxWidth)
	if err != nil {
		httpError(w, err)
		return
	}
	s.reply(w, r, func(st *kv.Store) (any, error) { return compareRuns(st, ids, metric, q.Get("module"), width) })
}

func (s *Server) apiSweeps(w http.ResponseWriter, r *http.Request) {
	if err := checkParams(r, "token"); err != nil {
		httpError(w, err)
		return
	}
	out, err := sweeps(s.opts.Store)
	if err != nil {
		httpError(w, err)
		return
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
