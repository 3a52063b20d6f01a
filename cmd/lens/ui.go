package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"syscall"
	"time"

	"lens/engine/ui"
	"lens/kv"
)

func cmdUI(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ui", "[--addr 127.0.0.1:7070] [--token T|random]",
		"Serve a live, read-only web view of the store: runs, run pages, comparisons, sweeps. "+
			"It binds loopback by default; any other address needs --token (env LENS_UI_TOKEN), "+
			"checked on every request; --token random makes one up and prints it in the URL", stderr)
	store := storeFlag(fs)
	addr := fs.String("addr", "127.0.0.1:7070", "address to listen on")
	token := fs.String("token", os.Getenv("LENS_UI_TOKEN"), "token every request must carry (env LENS_UI_TOKEN); \"random\" makes one up")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("lens ui takes no arguments, got %q", pos)
	}
	if *token == "random" {
		if *token, err = ui.NewToken(); err != nil {
			return err
		}
	}
	if err := ui.CheckAddr(*addr, *token); err != nil {
		return usagef("%v (or --token random)", err)
	}
	// Fail now, not on the first request, when there is no store to read.
	st, err := kv.Open(*store, kv.Options{ReadOnly: true, Command: "lens ui"})
	if err != nil {
		return err
	}
	if err := st.Close(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("lens ui: %w", err)
	}
	srv := ui.New(ui.Options{Store: *store, Token: *token})
	defer srv.Close()
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	u := url.URL{Scheme: "http", Host: ln.Addr().String(), Path: "/"}
	if *token != "" {
		u.RawQuery = url.Values{"token": {*token}}.Encode()
	}
	// The URL holds the token; print it to the terminal only, the secret
	// writer does not know this one.
	fmt.Fprintf(stdout, "lens ui: serving %s read-only at %s\n", *store, u.String())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("lens ui: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("lens ui: %w", err)
	}
	return nil
}
