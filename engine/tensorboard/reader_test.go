package tensorboard_test

import (
	"bytes"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"lens/engine/tensorboard"
	"lens/engine/tensorboard/tbread"
)

// The writer is checked with tbread, a reader that shares no code with it.

func readAll(t *testing.T, path string) []tbread.Event {
	t.Helper()
	evs, err := tbread.ReadFile(path)
	require.NoError(t, err)
	return evs
}

func TestFileNameAndVersion(t *testing.T) {
	dir := t.TempDir()
	before := time.Now()
	w, err := tensorboard.Create(dir)
	require.NoError(t, err)
	w2, err := tensorboard.Create(dir)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, w2.Close())
	require.NotEqual(t, w.Path(), w2.Path(), "two writers in the same second get two files")
	host, _ := os.Hostname()
	require.Regexp(t, `^events\.out\.tfevents\.\d+\.`+regexp.QuoteMeta(host)+`\.\d+\.\d+$`, filepath.Base(w.Path()))
	evs := readAll(t, w.Path())
	require.Len(t, evs, 1)
	require.Equal(t, "brain.Event:2", evs[0].FileVersion)
	require.InDelta(t, float64(before.UnixNano())/1e9, evs[0].WallTime, 5)
	files, err := tensorboard.EventFiles(dir)
	require.NoError(t, err)
	require.Len(t, files, 2)
	require.ErrorContains(t, tensorboard.CheckFresh(dir), "already holds event files")
	require.NoError(t, tensorboard.CheckFresh(filepath.Join(dir, "missing")))
}

func TestScalarsRoundTrip(t *testing.T) {
	cases := []struct {
		tag  string
		step int
		v    float64
	}{
		{"loss", 0, 2.5},
		{"loss", 1, math.NaN()},
		{"loss", 2, math.Inf(1)},
		{"eval/opticks", 2, math.Inf(-1)},
		{"lr", 3, 1e-30},
		{"lr", 4, -0.125},
		{"grad_norm", 1 << 40, 3.0e38},
	}
	dir := t.TempDir()
	w, err := tensorboard.Create(dir)
	require.NoError(t, err)
	wall := time.Unix(1700000000, 250_000_000)
	for _, c := range cases {
		require.NoError(t, w.Scalar(c.tag, c.step, c.v, wall))
	}
	require.NoError(t, w.Close())
	s, h, x := w.Counts()
	require.Equal(t, []int{len(cases), 0, 0}, []int{s, h, x})

	evs := readAll(t, w.Path())
	require.Len(t, evs, 1+len(cases))
	for i, c := range cases {
		e := evs[i+1]
		require.Equal(t, int64(c.step), e.Step)
		require.Equal(t, 1700000000.25, e.WallTime)
		require.Len(t, e.Values, 1)
		v := e.Values[0]
		require.Equal(t, c.tag, v.Tag)
		require.True(t, v.HasSimple)
		if math.IsNaN(c.v) {
			require.True(t, math.IsNaN(float64(v.Simple)), "NaN survives")
		} else {
			require.Equal(t, float32(c.v), v.Simple)
		}
	}
}

func TestScalarsOfOneStepShareAnEvent(t *testing.T) {
	w, err := tensorboard.Create(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, w.Scalars(7, map[string]float64{"b": 2, "a": 1, "c": 3}, time.Now()))
	require.NoError(t, w.Scalars(8, nil, time.Now()), "nothing to write is not an error")
	require.ErrorContains(t, w.Scalars(9, map[string]float64{"": 1}, time.Now()), "empty tag")
	require.NoError(t, w.Close())
	evs := readAll(t, w.Path())
	require.Len(t, evs, 2)
	var tags []string
	for _, v := range evs[1].Values {
		tags = append(tags, v.Tag)
	}
	require.Equal(t, []string{"a", "b", "c"}, tags)
	require.Equal(t, int64(7), evs[1].Step)
}

// direct computes what a histogram of values must say, from the values.
type direct struct {
	num, sum, sumSq, min, max float64
	finite                    []float64
}

func compute(values []float32) direct {
	d := direct{min: math.Inf(1), max: math.Inf(-1)}
	for _, f := range values {
		v := float64(f)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		d.finite = append(d.finite, v)
		d.num++
		d.sum += v
		d.sumSq += v * v
		d.min = math.Min(d.min, v)
		d.max = math.Max(d.max, v)
	}
	return d
}

func TestHistogramMatchesDirectComputation(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	normal := make([]float32, 5000)
	for i := range normal {
		normal[i] = float32(rng.NormFloat64() * 0.02)
	}
	wide := make([]float32, 2000)
	for i := range wide {
		wide[i] = float32(math.Exp(rng.Float64()*60-30)) * float32(1-2*rng.IntN(2))
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	cases := []struct {
		name    string
		values  []float32
		skipped int
	}{
		{"normal", normal, 0},
		{"wide range, both signs", wide, 0},
		{"one value", []float32{0.5}, 0},
		{"all equal", []float32{3, 3, 3, 3}, 0},
		{"zeros and a limit", []float32{0, 0, 1e-12, -1e-12}, 0},
		{"float32 extremes", []float32{math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32}, 0},
		{"non-finite left out", []float32{1, nan, 2, inf, -inf, 3}, 3},
	}
	dir := t.TempDir()
	w, err := tensorboard.Create(dir)
	require.NoError(t, err)
	for i, c := range cases {
		require.NoError(t, w.Histogram("h/"+c.name, i, c.values, time.Now()))
	}
	// Nothing finite: nothing written, and the log says what was left out.
	var logs bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	w2, err := tensorboard.Create(dir)
	slog.SetDefault(old)
	require.NoError(t, err)
	require.NoError(t, w2.Histogram("empty", 0, []float32{nan, inf, 1, 2}, time.Now()))
	require.NoError(t, w2.Close())
	require.Contains(t, logs.String(), "left_out=2 of=4")
	require.NoError(t, w.Histogram("empty", 0, []float32{nan, inf}, time.Now()))
	require.NoError(t, w.Histogram("empty", 1, nil, time.Now()))
	require.NoError(t, w.Close())
	_, nh, _ := w.Counts()
	require.Equal(t, len(cases), nh)

	got := tbread.Histograms(readAll(t, w.Path()))
	require.NotContains(t, got, "empty")
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hs := got["h/"+c.name]
			require.Len(t, hs, 1)
			require.Equal(t, int64(i), hs[0].Step)
			h, d := hs[0].Histo, compute(c.values)
			require.Equal(t, float64(len(c.values)-c.skipped), h.Num)
			require.Equal(t, d.num, h.Num)
			require.Equal(t, d.min, h.Min)
			require.Equal(t, d.max, h.Max)
			require.InDelta(t, d.sum, h.Sum, 1e-9*math.Max(1, math.Abs(d.sumSq)))
			require.InEpsilon(t, d.sumSq, h.SumSquares, 1e-12)
			require.Equal(t, len(h.Limits), len(h.Counts))
			require.Equal(t, math.MaxFloat64, h.Limits[len(h.Limits)-1], "the last bucket reaches DBL_MAX")
			// Each bucket [previous limit, limit) holds exactly the values in it.
			total := 0.0
			for b := range h.Limits {
				lo := math.Inf(-1)
				if b > 0 {
					lo = h.Limits[b-1]
					require.Less(t, lo, h.Limits[b], "limits increase")
				}
				n := 0.0
				for _, v := range d.finite {
					if v >= lo && v < h.Limits[b] {
						n++
					}
				}
				require.Equal(t, n, h.Counts[b], "bucket [%g, %g)", lo, h.Limits[b])
				total += h.Counts[b]
				// Occupied buckets are TF's 10% ones, not one wide bin.
				if h.Counts[b] > 0 && lo >= 1e-12 && h.Limits[b] < 1e20 {
					require.InDelta(t, 1.1, h.Limits[b]/lo, 1e-9)
				}
				if h.Counts[b] > 0 && h.Limits[b] <= -1e-12 && lo > -1e20 {
					require.InDelta(t, 1.1, lo/h.Limits[b], 1e-9)
				}
			}
			require.Equal(t, h.Num, total)
		})
	}
}

func TestTextSummary(t *testing.T) {
	w, err := tensorboard.Create(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, w.Text("config", 0, "```json\n{\"lr\": 0.01}\n```", time.Now()))
	require.NoError(t, w.Close())
	evs := readAll(t, w.Path())
	require.Len(t, evs, 2)
	v := evs[1].Values[0]
	require.Equal(t, "config", v.Tag)
	require.Equal(t, "text", v.Plugin)
	require.Equal(t, 7, v.DType, "DT_STRING")
	require.Equal(t, []string{"```json\n{\"lr\": 0.01}\n```"}, v.Strings)
}

func TestCorruptedByteIsDetected(t *testing.T) {
	w, err := tensorboard.Create(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, w.Scalar("loss", 1, 0.5, time.Now()))
	require.NoError(t, w.Histogram("w", 1, []float32{1, 2, 3}, time.Now()))
	require.NoError(t, w.Close())
	good, err := os.ReadFile(w.Path())
	require.NoError(t, err)
	_, err = tbread.Parse(good)
	require.NoError(t, err)
	// Every single-bit flip anywhere in the file is caught by a CRC or by
	// the framing.
	for i := range good {
		bad := append([]byte(nil), good...)
		bad[i] ^= 0x10
		_, err := tbread.Parse(bad)
		require.Error(t, err, "flip at byte %d of %d", i, len(good))
	}
	_, err = tbread.Parse(good[:len(good)-1])
	require.ErrorContains(t, err, "runs past the end")
}

func TestFlushMakesEventsReadable(t *testing.T) {
	w, err := tensorboard.Create(t.TempDir())
	require.NoError(t, err)
	defer w.Close()
	require.Len(t, readAll(t, w.Path()), 1, "the file_version event is on disk at once")
	require.NoError(t, w.Scalar("loss", 1, 1.5, time.Now()))
	require.NoError(t, w.Flush())
	sc := tbread.Scalars(readAll(t, w.Path()))
	require.Equal(t, []float32{1.5}, []float32{sc["loss"][0].Value})
	require.NoError(t, w.Close())
	require.ErrorContains(t, w.Scalar("loss", 2, 1, time.Now()), "after Close")
}
