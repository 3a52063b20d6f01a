package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUICommand runs `lens ui` as a process: it refuses a non-loopback
// address without a token, serves a loopback one, checks a random token on
// every request, and stops cleanly on SIGTERM.
func TestUICommand(t *testing.T) {
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "s.star": tinyScript + "train(name = \"ui-cmd\")\n"})
	_, stderr, code := lens(t, dir, "run", "s.star")
	require.Equal(t, 0, code, stderr)

	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:7070"} {
		_, stderr, code := lens(t, dir, "ui", "--addr", addr)
		assert.Equal(t, exitUsage, code, "%s: %s", addr, stderr)
		assert.Contains(t, stderr, "token", addr)
	}
	_, stderr, code = lens(t, dir, "ui", "--store", "no-such-store")
	assert.Equal(t, exitFail, code, stderr)

	get := func(u string) int {
		resp, err := http.Get(u)
		require.NoError(t, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	start := func(args ...string) (*url.URL, *exec.Cmd) {
		cmd := exec.Command(lensBin, append([]string{"ui"}, args...)...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LENS_STORE=", "LENS_UI_TOKEN=")
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		cmd.Stderr = os.Stderr
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		line, err := bufio.NewReader(out).ReadString('\n')
		require.NoError(t, err)
		i := strings.Index(line, "http://")
		require.GreaterOrEqual(t, i, 0, line)
		u, err := url.Parse(strings.TrimSpace(line[i:]))
		require.NoError(t, err)
		return u, cmd
	}

	u, cmd := start("--addr", "127.0.0.1:0")
	assert.Equal(t, http.StatusOK, get(u.String()))
	assert.Equal(t, http.StatusOK, get(u.Scheme+"://"+u.Host+"/api/runs"))
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		assert.NoError(t, err, "exit status after SIGTERM")
	case <-time.After(10 * time.Second):
		t.Fatal("lens ui did not stop on SIGTERM")
	}

	// Any address with --token random: the printed URL carries the token.
	u, _ = start("--addr", "0.0.0.0:0", "--token", "random")
	tok := u.Query().Get("token")
	require.Len(t, tok, 32)
	_, port, err := net.SplitHostPort(u.Host)
	require.NoError(t, err)
	base := "http://127.0.0.1:" + port
	assert.Equal(t, http.StatusUnauthorized, get(base+"/api/runs"))
	assert.Equal(t, http.StatusUnauthorized, get(base+"/api/runs?token=wrong"))
	assert.Equal(t, http.StatusOK, get(base+"/api/runs?token="+tok))
}
