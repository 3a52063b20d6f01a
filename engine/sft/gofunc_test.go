package sft

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/data"
)

func TestGoFuncs(t *testing.T) {
	fns, err := GoFuncs(filepath.Join(data.GOROOT(), "src"))
	require.NoError(t, err)
	require.Greater(t, len(fns), 500)
	byName := map[string]GoFunc{}
	for _, g := range fns {
		byName[g.Pkg+"."+g.Name] = g
		require.LessOrEqual(t, len(g.Signature), maxGoFuncBytes)
		require.Regexp(t, `^`+g.Name+` `, g.Doc)
	}
	for _, tc := range []struct{ name, sig, typ string }{
		{"math.Abs", "func Abs(x float64) float64", "func(float64) float64"},
		{"math.Max", "func Max(x, y float64) float64", "func(float64, float64) float64"},
		{"strings.Repeat", "func Repeat(s string, count int) string", "func(string, int) string"},
		{"strconv.Atoi", "func Atoi(s string) (int, error)", "func(string) (int, error)"},
		{"utf8.DecodeRuneInString", "func DecodeRuneInString(s string) (r rune, size int)", "func(string) (rune, int)"},
		{"errors.Join", "func Join(errs ...error) error", "func(...error) error"},
	} {
		g, ok := byName[tc.name]
		require.True(t, ok, tc.name)
		require.Equal(t, tc.sig, g.Signature)
		require.Equal(t, tc.typ, g.Type)
	}
	_, ok := byName["slices.Sort"]
	require.False(t, ok, "generic functions are left out")

	ex, err := byName["math.Abs"].Example("type")
	require.NoError(t, err)
	require.Equal(t, Example{Prompt: "func Abs(x float64) float64\ntype:", Completion: " func(float64) float64", Where: "math.Abs"}, ex)
	_, err = byName["math.Abs"].Example("nope")
	require.ErrorContains(t, err, `task "nope"`)

	s := Spec{Builtin: "gofunc/name"}
	tr, ev, err := s.Load()
	require.NoError(t, err)
	require.Equal(t, len(fns), len(tr.Examples)+len(ev.Examples))
	_, _, err = Spec{Builtin: "other"}.Load()
	require.ErrorContains(t, err, "unknown built-in dataset")
}
