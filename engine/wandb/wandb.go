// Package wandb mirrors lens runs to Weights & Biases: a run's config and
// its step-aligned metrics (one history line per step, train and eval
// metrics of a step together), either online through W&B's HTTP API
// (GraphQL upsertBucket to create or resume the run, the file_stream
// endpoint for wandb-history.jsonl and wandb-summary.json) or offline into
// a local folder that Sync uploads later. SyncRun uploads a run straight
// from the store, so a run trained without W&B can still be sent.
//
// Uploads resume without duplicating or skipping steps: the server's
// historyLineCount and the last _step of its history tail say where to go
// on, and an offline folder keeps a cursor (sync.json) of what the server
// acknowledged. It is not a general W&B client: no artifacts, media,
// system metrics or console logs.
//
// The API key comes from the caller (WANDB_API_KEY); it is sent only as
// HTTP basic auth and never logged, stored, or put in an error.
package wandb

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"lens/engine/secret"
	"lens/kv"
)

// Environment variables cmd/lens reads (the engine itself reads none).
const (
	EnvAPIKey  = "WANDB_API_KEY"
	EnvBaseURL = "WANDB_BASE_URL"
)

// DefaultBaseURL is W&B's public API.
const DefaultBaseURL = "https://api.wandb.ai"

// Modes of a Sink.
const (
	ModeOnline  = "online"
	ModeOffline = "offline"
)

// Key is an API key: a secret.Token, which formats as "[redacted]"
// everywhere (fmt, slog, JSON) so that printing Options can never leak it.
type Key = secret.Token

// Retry is the backoff for failed requests (network errors, 429, 5xx).
type Retry struct {
	Attempts int           // tries per request before giving up (default 6)
	Backoff  time.Duration // first wait, doubled after each failure (default 1s)
	Max      time.Duration // longest wait (default 20s)
}

func (r Retry) withDefaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 6
	}
	if r.Backoff <= 0 {
		r.Backoff = time.Second
	}
	if r.Max <= 0 {
		r.Max = 20 * time.Second
	}
	return r
}

// Options say where a run goes.
type Options struct {
	Project string // W&B project (required to upload)
	Entity  string // W&B user or team; empty: the key's default entity
	Mode    string // ModeOnline (default) or ModeOffline; Sinks only
	// Dir holds offline folders, one per run: <Dir>/<lens run id>/. An
	// online Sink mirrors into it too, so that a failed upload can be
	// finished by Sync.
	Dir     string
	APIKey  Key
	BaseURL string // default DefaultBaseURL
	// ChunkLines is the most history lines per file_stream request
	// (default 1000).
	ChunkLines int
	// FlushEvery is how often an online Sink sends what it has (default
	// 5s); a full chunk goes at once.
	FlushEvery time.Duration
	Retry      Retry
	HTTPClient *http.Client // default: 30 s timeout
	// Store, when set, lets Sync finish a folder whose live upload gave up
	// (the folder stops there) from the store's record of the run, once the
	// run has ended.
	Store  *kv.Store
	Logger *slog.Logger // default: discard
}

// FromEnv fills APIKey and BaseURL, when unset, from getenv (cmd/lens
// passes os.Getenv): WANDB_API_KEY and WANDB_BASE_URL.
func (o Options) FromEnv(getenv func(string) string) Options {
	if o.APIKey == "" {
		o.APIKey = Key(strings.TrimSpace(getenv(EnvAPIKey)))
	}
	if o.BaseURL == "" {
		o.BaseURL = getenv(EnvBaseURL)
	}
	return o
}

func (o Options) withDefaults() Options {
	if o.Mode == "" {
		o.Mode = ModeOnline
	}
	if o.BaseURL == "" {
		o.BaseURL = DefaultBaseURL
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	if o.ChunkLines <= 0 {
		o.ChunkLines = 1000
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = 5 * time.Second
	}
	o.Retry = o.Retry.withDefaults()
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// RunID is the W&B run id (the "name" of upsertBucket, the last part of
// the run's URL) of lens run id: stable, so that every upload of a run
// lands in the same W&B run. W&B ids allow letters, digits, "-" and "_";
// anything else is replaced and a hash of the original keeps ids apart.
func RunID(lensID string) string {
	var b strings.Builder
	changed := false
	for _, r := range lensID {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r - 'A' + 'a') // W&B run URLs are case-insensitive in places
			changed = true
		default:
			b.WriteByte('-')
			changed = true
		}
	}
	id := b.String()
	if len(id) > 40 {
		id, changed = id[:40], true
	}
	if changed || id == "" {
		h := sha256.Sum256([]byte(lensID))
		id += "-" + hex.EncodeToString(h[:4])
	}
	return "lens-" + id
}
