package runtime

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// AssertModule is the assert module that test files see (lens test). A
// failed assertion is an error, so the test stops there and its report
// carries the Starlark backtrace of the assert call; every message shows
// the values compared, after msg when one is given.
//
//	assert.eq(a, b, msg=None): a == b
//	assert.ne(a, b, msg=None): a != b
//	assert.true(x, msg=None): x is truthy
//	assert.false(x, msg=None): x is falsy
//	assert.lt(a, b, msg=None), assert.le, assert.gt, assert.ge: a < b, a <= b, a > b, a >= b
//	assert.close(a, b, rtol=1e-6, atol=0, msg=None): |a - b| <= atol + rtol*|b|, for numbers or
//	    equal-length (nested) lists or tuples of numbers, element by element
//	assert.contains(container, x, msg=None): x in container
//	assert.fails(fn, pattern) -> string: fn() raises an error whose message matches the regular
//	    expression pattern (unanchored); returns the message
var AssertModule = &starlarkstruct.Module{Name: "assert", Members: starlark.StringDict{
	"eq":       starlark.NewBuiltin("assert.eq", assertEq),
	"ne":       starlark.NewBuiltin("assert.ne", assertNe),
	"true":     starlark.NewBuiltin("assert.true", assertTruth(true)),
	"false":    starlark.NewBuiltin("assert.false", assertTruth(false)),
	"lt":       starlark.NewBuiltin("assert.lt", assertCompare(syntax.LT)),
	"le":       starlark.NewBuiltin("assert.le", assertCompare(syntax.LE)),
	"gt":       starlark.NewBuiltin("assert.gt", assertCompare(syntax.GT)),
	"ge":       starlark.NewBuiltin("assert.ge", assertCompare(syntax.GE)),
	"close":    starlark.NewBuiltin("assert.close", assertClose),
	"contains": starlark.NewBuiltin("assert.contains", assertContains),
	"fails":    starlark.NewBuiltin("assert.fails", assertFails),
}}

// failure is a failed assertion. Its message leaves out the function's
// name: the backtrace says "Error in assert.eq: ...".
func failure(msg, format string, args ...any) error {
	s := fmt.Sprintf(format, args...)
	if msg != "" {
		s = msg + ": " + s
	}
	return errors.New(s)
}

func unpackPair(b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (x, y starlark.Value, msg string, err error) {
	err = starlark.UnpackArgs(b.Name(), args, kwargs, "a", &x, "b", &y, "msg?", &msg)
	return x, y, msg, err
}

func assertEq(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	x, y, msg, err := unpackPair(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	eq, err := starlark.Equal(x, y)
	if err != nil {
		return nil, err
	}
	if !eq {
		return nil, failure(msg, "%s != %s", x, y)
	}
	return starlark.None, nil
}

func assertNe(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	x, y, msg, err := unpackPair(b, args, kwargs)
	if err != nil {
		return nil, err
	}
	eq, err := starlark.Equal(x, y)
	if err != nil {
		return nil, err
	}
	if eq {
		return nil, failure(msg, "%s == %s", x, y)
	}
	return starlark.None, nil
}

func assertTruth(want bool) func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
	return func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var x starlark.Value
		var msg string
		if err := starlark.UnpackArgs(b.Name(), args, kwargs, "x", &x, "msg?", &msg); err != nil {
			return nil, err
		}
		if bool(x.Truth()) != want {
			return nil, failure(msg, "%s is not %v", x, want)
		}
		return starlark.None, nil
	}
}

func assertCompare(op syntax.Token) func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error) {
	return func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		x, y, msg, err := unpackPair(b, args, kwargs)
		if err != nil {
			return nil, err
		}
		ok, err := starlark.Compare(op, x, y)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, failure(msg, "%s is not %s %s", x, op, y)
		}
		return starlark.None, nil
	}
}

func assertClose(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x, y starlark.Value
	var rtolV, atolV starlark.Value = starlark.Float(1e-6), starlark.Float(0)
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "a", &x, "b", &y, "rtol?", &rtolV, "atol?", &atolV, "msg?", &msg); err != nil {
		return nil, err
	}
	rtol, rok := starlark.AsFloat(rtolV)
	atol, aok := starlark.AsFloat(atolV)
	if !rok || !aok {
		return nil, fmt.Errorf("rtol and atol must be numbers (got %s and %s)", rtolV.Type(), atolV.Type())
	}
	if rtol < 0 || atol < 0 || math.IsNaN(rtol) || math.IsNaN(atol) {
		return nil, fmt.Errorf("rtol and atol must not be negative (got rtol=%g, atol=%g)", rtol, atol)
	}
	where, detail, err := closeDiff(x, y, rtol, atol, "")
	if err != nil {
		return nil, err
	}
	if detail == "" {
		return starlark.None, nil
	}
	if where != "" {
		detail = "at " + where + ": " + detail
	}
	return nil, failure(msg, "%s is not close to %s: %s (rtol=%g, atol=%g)", x, y, detail, rtol, atol)
}

// closeDiff compares x and y element by element. It returns the path of
// the first element that differs and why (empty when all are close), or
// an error when the values are not numbers or sequences of numbers.
func closeDiff(x, y starlark.Value, rtol, atol float64, path string) (where, detail string, err error) {
	xs, xSeq := x.(starlark.Indexable)
	ys, ySeq := y.(starlark.Indexable)
	_, xStr := x.(starlark.String)
	_, yStr := y.(starlark.String)
	if xSeq && ySeq && !xStr && !yStr {
		if xs.Len() != ys.Len() {
			return path, fmt.Sprintf("lengths differ: %d != %d", xs.Len(), ys.Len()), nil
		}
		for i := range xs.Len() {
			w, d, err := closeDiff(xs.Index(i), ys.Index(i), rtol, atol, fmt.Sprintf("%s[%d]", path, i))
			if err != nil || d != "" {
				return w, d, err
			}
		}
		return "", "", nil
	}
	a, aok := starlark.AsFloat(x)
	b, bok := starlark.AsFloat(y)
	if !aok || !bok {
		at := ""
		if path != "" {
			at = " at " + path
		}
		return "", "", fmt.Errorf("want numbers or equal-length lists of numbers, got %s and %s%s", x.Type(), y.Type(), at)
	}
	if a == b { // equal infinities too
		return "", "", nil
	}
	diff, tol := math.Abs(a-b), atol+rtol*math.Abs(b)
	if diff <= tol {
		return "", "", nil
	}
	if path != "" {
		return path, fmt.Sprintf("%s vs %s, |diff| %.4g > %.4g", x, y, diff, tol), nil
	}
	return "", fmt.Sprintf("|diff| %.4g > %.4g", diff, tol), nil
}

func assertContains(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var c, x starlark.Value
	var msg string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "container", &c, "x", &x, "msg?", &msg); err != nil {
		return nil, err
	}
	in, err := starlark.Binary(syntax.IN, x, c)
	if err != nil {
		return nil, err
	}
	if !in.Truth() {
		return nil, failure(msg, "%s does not contain %s", c, x)
	}
	return starlark.None, nil
}

func assertFails(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var fn starlark.Callable
	var pattern string
	if err := starlark.UnpackArgs(b.Name(), args, kwargs, "fn", &fn, "pattern", &pattern); err != nil {
		return nil, err
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("pattern: %w", err)
	}
	v, err := starlark.Call(t, fn, nil, nil)
	if err == nil {
		return nil, fmt.Errorf("%s did not fail (it returned %s); want an error matching %q", fn.Name(), v, pattern)
	}
	// An interrupt is not the failure under test: let it stop the test.
	if ctx, ok := t.Local(ContextKey).(context.Context); ok && ctx.Err() != nil {
		return nil, err
	}
	text := err.Error()
	if ee, ok := err.(*starlark.EvalError); ok {
		text = ee.Msg
	}
	if !re.MatchString(text) {
		return nil, fmt.Errorf("%s failed with %q, which does not match %q", fn.Name(), text, pattern)
	}
	return starlark.String(text), nil
}
