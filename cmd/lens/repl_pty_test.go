package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestREPLTerminal drives `lens repl` through a pseudo-terminal as a
// person would: Tab completes module members (with the call's paren) and
// keyword arguments, help() prints a builtin's signature with its
// defaults, a def spans lines, and the banner names every module.
func TestREPLTerminal(t *testing.T) {
	dir := workspace(t, nil)
	cmd := exec.Command(lensBin, "repl")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LENS_STORE=", "TERM=xterm")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 200})
	if err != nil {
		t.Fatalf("start lens repl on a pty: %v", err)
	}
	defer tty.Close()
	defer cmd.Process.Kill()
	var mu sync.Mutex
	var out bytes.Buffer
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			mu.Lock()
			out.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	seen := 0 // expect looks only at output after the previous match
	expect := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			s := out.String()
			mu.Unlock()
			if i := strings.Index(s[seen:], what); i >= 0 {
				seen += i + len(what)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no %q in the terminal after %q; it shows:\n%s", what, out.String()[:seen], out.String()[seen:])
	}
	send := func(s string) {
		t.Helper()
		if _, err := tty.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	expect("Modules: analyze, collect, data, evaluate, hf, lens, lora, model, report, tb, wandb.")
	expect(">>> ")

	send("model.ti\t")
	expect("model.tiny(")
	send("seed = 1)\r")
	expect("<model hidden=")
	expect(">>> ")

	send("lens.train(st\t")
	expect("steps=")
	send("\x03") // leaves the list of candidates
	time.Sleep(100 * time.Millisecond)
	send("\x03") // abandons the line
	expect("^C")
	expect(">>> ")

	send("help(lens.train)\r")
	expect("lens.train(model, data, lora=None, steps=100, batch_size=8, seq_len=128")
	expect("steps")
	expect("int: optimizer steps")
	expect(">>> ")

	send("def f(x):\r")
	expect("... ")
	send("    return x + 1\r")
	expect("... ")
	send("\r")
	expect(">>> ")
	send("f(41)\r")
	expect("42")
	expect(">>> ")

	send("exit()\r")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("lens repl: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("lens repl did not exit")
	}
}
