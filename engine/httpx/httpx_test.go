package httpx

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"lens/engine/secret"
)

func TestRetryDo(t *testing.T) {
	status := func(code int, retryAfter string) error {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		return &StatusError{Status: code, Header: h}
	}
	cases := []struct {
		name      string
		errs      []error // fn's results, in order; the last repeats
		wantCalls int
		wantWaits []time.Duration
		wantErr   bool
	}{
		{"success first", []error{nil}, 1, nil, false},
		{"two 503 then ok", []error{status(503, ""), status(503, ""), nil}, 3, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}, false},
		{"gives up", []error{errors.New("connection refused")}, 4, []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}, true},
		{"404 is final", []error{status(404, "")}, 1, nil, true},
		{"permanent", []error{Permanent(errors.New("bad url"))}, 1, nil, true},
		{"cancelled is final", []error{context.Canceled}, 1, nil, true},
		{"retry-after wins, capped", []error{status(429, "1"), status(429, "100"), nil}, 3, []time.Duration{time.Second, 50 * time.Second}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var waits []time.Duration
			r := Retry{Attempts: 4, Backoff: 10 * time.Millisecond, Max: 50 * time.Second,
				Sleep: func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }}
			calls := 0
			n, err := r.Do(context.Background(), func() error {
				calls++
				return c.errs[min(calls, len(c.errs))-1]
			})
			if n != c.wantCalls || calls != c.wantCalls || (err != nil) != c.wantErr {
				t.Fatalf("Do = %d, %v after %d calls; want %d calls, error %v", n, err, calls, c.wantCalls, c.wantErr)
			}
			if len(waits) != len(c.wantWaits) {
				t.Fatalf("waits %v, want %v", waits, c.wantWaits)
			}
			for i := range waits {
				if waits[i] != c.wantWaits[i] {
					t.Errorf("wait %d = %v, want %v", i, waits[i], c.wantWaits[i])
				}
			}
		})
	}
}

func TestRetryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	_, err := Retry{Attempts: 10, Backoff: time.Hour}.Do(ctx, func() error {
		calls++
		cancel()
		return &StatusError{Status: 502}
	})
	if calls != 1 || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "HTTP 502") {
		t.Fatalf("calls %d, err %v", calls, err)
	}
}

// Send redacts the token from a transport error whose URL holds it, and
// returns any status with its body.
func TestSend(t *testing.T) {
	const tok = secret.Token("tok_0123456789abcdef")
	red := (*secret.Redactor)(nil).With("tok", tok)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte("0123456789"))
	}))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, err := Send(nil, req, 4, red)
	if err != nil || resp.Status != http.StatusTeapot || string(resp.Body) != "0123" {
		t.Fatalf("Send = %+v, %v", resp, err)
	}
	srv.Close()
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/"+string(tok), nil)
	_, err = Send(nil, req, 4, red)
	if err == nil || strings.Contains(err.Error(), string(tok)) || !strings.Contains(err.Error(), "[tok redacted]") {
		t.Fatalf("transport error %v", err)
	}
}
