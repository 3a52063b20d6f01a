package ui

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFilterMatchesStarlark checks Filter against Starlark itself: the
// golden file holds, for each expression and run, what go.starlark.net's
// evaluation gave (true, false or "error"); testdata/filtergen.go.txt made it.
func TestFilterMatchesStarlark(t *testing.T) {
	b, err := os.ReadFile("testdata/filter_golden.json")
	require.NoError(t, err)
	var g struct {
		Runs  []map[string]any `json:"runs"`
		Cases []struct {
			Expr string `json:"expr"`
			Want []any  `json:"want"`
		} `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(b, &g))
	require.NotEmpty(t, g.Cases)
	for _, c := range g.Cases {
		f, perr := ParseFilter(c.Expr)
		for i, run := range g.Runs {
			if c.Want[i] == "error" {
				if perr == nil {
					_, err := f.Match(run)
					assert.Error(t, err, "%s on run %d: Starlark fails", c.Expr, i)
				}
				continue
			}
			require.NoError(t, perr, c.Expr)
			got, err := f.Match(run)
			require.NoError(t, err, "%s on run %d", c.Expr, i)
			assert.Equal(t, c.Want[i], got, "%s on run %d", c.Expr, i)
		}
	}
}

// TestFilterExtensions: what Filter adds to Starlark's meaning, by design.
func TestFilterExtensions(t *testing.T) {
	run := map[string]any{"final_loss": nil, "status": "running", "config": map[string]any{"r": 16.0, "lr": 0.001}}
	for _, c := range []struct {
		expr string
		want bool
	}{
		// x.f on a dict is x["f"].
		{`config.r == 16`, true},
		{`run.config.lr < 0.01`, true},
		// An ordered comparison with None is False, not an error: a running
		// run has no final loss yet.
		{`final_loss < 2`, false},
		{`final_loss >= 2`, false},
		{`final_loss == None`, true},
		{`not final_loss < 2 and status == "running"`, true},
	} {
		f, err := ParseFilter(c.expr)
		require.NoError(t, err, c.expr)
		got, err := f.Match(run)
		require.NoError(t, err, c.expr)
		assert.Equal(t, c.want, got, c.expr)
	}
	for _, bad := range []string{``, `a ==`, `"open`, `a $ b`, `config.`, `[1, 2`, `f(x)`} {
		_, err := ParseFilter(bad)
		assert.Error(t, err, bad)
	}
}
