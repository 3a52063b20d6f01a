package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"go.starlark.net/starlark"

	"lens/builtins"
	"lens/engine/runs"
	"lens/runtime"
)

// apiDocs explains the builtins to help() and the REPL's completion.
var apiDocs = &runtime.Docs{Help: builtins.Help, Keywords: builtins.KeywordNames}

// helpAPI is `lens help NAME` for the script API (lens.train, collect,
// run, run.metrics) and `lens help --markdown` (docs/API.md); ok is false
// when topic names neither.
func helpAPI(topic string, stdout io.Writer) (ok bool) {
	if topic == "--markdown" {
		fmt.Fprint(stdout, builtins.Markdown())
		return true
	}
	s, ok := builtins.HelpTopic(topic)
	if ok {
		fmt.Fprint(stdout, s)
	}
	return ok
}

// replBanner greets a REPL session, naming every module.
func replBanner(predecl starlark.StringDict) string {
	names := make([]string, 0, len(predecl))
	for k := range predecl {
		names = append(names, k)
	}
	sort.Strings(names)
	return fmt.Sprintf("lens %s REPL. Modules: %s.\nhelp(x) explains anything (help(lens.train)); Tab completes; exit() or Ctrl-D to leave.\n",
		runs.Version, strings.Join(names, ", "))
}
