// Package httpx is the HTTP plumbing lens's integrations (engine/hf,
// engine/wandb) share: one retry loop with exponential backoff that honours
// a server's Retry-After, and one way to send a request and read its answer
// with credentials redacted from any transport error.
package httpx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"lens/engine/secret"
)

// Retry is the backoff for requests that may succeed later: network
// failures, 429 and 5xx answers.
type Retry struct {
	Attempts int           // tries before giving up; below 1 means 1
	Backoff  time.Duration // wait before the second try, doubled after each failure
	Max      time.Duration // longest wait, also for Retry-After; 0: no limit
	// Retryable says whether an error may go away on its own (default
	// Temporary).
	Retryable func(error) bool
	// OnRetry, if set, is told of each failure that will be retried.
	OnRetry func(attempt int, wait time.Duration, err error)
	// Sleep waits d or until ctx ends (default: a timer).
	Sleep func(ctx context.Context, d time.Duration) error
}

// Do calls fn until it succeeds, fails with an error that is not
// retryable, or has failed Attempts times, and returns how many calls it
// made and fn's last error. When ctx ends during a wait it returns an
// error that matches ctx.Err() with errors.Is and names the last failure.
func (r Retry) Do(ctx context.Context, fn func() error) (int, error) {
	attempts := max(r.Attempts, 1)
	retryable := r.Retryable
	if retryable == nil {
		retryable = Temporary
	}
	sleep := r.Sleep
	if sleep == nil {
		sleep = SleepContext
	}
	for i := 1; ; i++ {
		err := fn()
		if err == nil || i >= attempts || !retryable(err) {
			return i, err
		}
		wait := r.Wait(i, err)
		if r.OnRetry != nil {
			r.OnRetry(i, wait, err)
		}
		if serr := sleep(ctx, wait); serr != nil {
			return i, fmt.Errorf("%w (last error: %v)", serr, err)
		}
	}
}

// Wait is the wait after failed attempt (1-based): Backoff doubled per
// failure, or the server's Retry-After when longer, at most Max.
func (r Retry) Wait(attempt int, err error) time.Duration {
	d := r.Backoff << (attempt - 1)
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) && ra.RetryAfter() > d {
		d = ra.RetryAfter()
	}
	if r.Max > 0 && (d > r.Max || d < 0) {
		d = r.Max
	}
	return d
}

// SleepContext waits d, returning ctx.Err() early if ctx ends.
func SleepContext(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// StatusError is an answer with a status that is not 2xx (nor one the
// caller accepted).
type StatusError struct {
	Status int
	Header http.Header
	Body   []byte
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d", e.Status) }

// RetryAfter is the answer's Retry-After in seconds, 0 if none.
func (e *StatusError) RetryAfter() time.Duration {
	if s, err := strconv.Atoi(e.Header.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// Permanent marks err as one another attempt cannot fix.
func Permanent(err error) error { return permanent{err} }

type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Temporary is the default Retryable: everything but a cancelled or
// expired context, an error marked Permanent, and a *StatusError other
// than 429 and 5xx.
func Temporary(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if errors.As(err, new(permanent)) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status == http.StatusTooManyRequests || se.Status >= 500
	}
	return true
}

// Response is an HTTP answer, read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Send does req with hc (nil: http.DefaultClient), reads at most limit
// bytes of the answer and returns it whatever its status. A transport
// error is returned with red's secrets redacted from its text (a *url.Error
// names the URL, which may hold a token).
func Send(hc *http.Client, req *http.Request, limit int64, red *secret.Redactor) (*Response, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, red.Error(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, red.Error(fmt.Errorf("read answer: %w", err))
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, nil
}
