package generate_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/accel/acceltest"
	"lens/engine/generate"
	"lens/engine/model"
)

// TestHostDecodeKernels: the Host's cached attention equals rows of the
// training attention; Copy copies ranges and refuses out-of-range ones.
func TestHostDecodeKernels(t *testing.T) { acceltest.DecodeKernels(t, accel.Host{}, 1e-5) }

// TestOnHost: decoding through the device path on accel.Host gives the
// CPU generator's tokens, with logits within 1e-4, for GQA and MQA models
// with and without an adapter.
func TestOnHost(t *testing.T) { acceltest.Decode(t, accel.Host{}, 1e-4, 40, 1, 6, 19) }

// TestOnHostFamilies: every family the device step trains (Mistral's and
// Gemma's windows, Qwen2's biases, Qwen3's q/k norms, Gemma 3's block)
// and packed bases decode on accel.Host to the CPU Session's tokens,
// greedy and sampled, with logits within 1e-4, with and without an adapter.
func TestOnHostFamilies(t *testing.T) { acceltest.DecodeFamilies(t, accel.Host{}, 1e-4) }

// closeCounter is accel.Host, counting Close calls.
type closeCounter struct {
	accel.Host
	closed *int
}

func (c closeCounter) Close() error { *c.closed++; return nil }

type hostBackend struct{ closed *int }

func (hostBackend) Available() (bool, string)     { return true, "" }
func (b hostBackend) Open() (accel.Device, error) { return closeCounter{closed: b.closed}, nil }

// TestNewDevice: "cpu" is the plain path; another name opens that backend's
// device, which the Generator's Close closes; an unknown name fails.
func TestNewDevice(t *testing.T) {
	m, ad := acceltest.DecodeModel(t, model.Config{VocabSize: 40, HiddenSize: 16, IntermediateSize: 24, NumHiddenLayers: 1,
		NumAttentionHeads: 2, NumKeyValueHeads: 1, MaxPositionEmbeddings: 32}, 2, []string{"q_proj"}, 1)
	g, err := generate.NewDevice("cpu", m, ad)
	require.NoError(t, err)
	require.Equal(t, "cpu", g.Device())
	want, err := g.Generate(context.Background(), []int32{1, 2, 3}, generate.Options{MaxNewTokens: 10}, nil)
	require.NoError(t, err)

	closed := 0
	accel.Register("generate-test-host", hostBackend{&closed})
	g, err = generate.NewDevice("generate-test-host", m, ad)
	require.NoError(t, err)
	require.Equal(t, "host", g.Device())
	got, err := g.Generate(context.Background(), []int32{1, 2, 3}, generate.Options{MaxNewTokens: 10}, nil)
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.Zero(t, closed)
	require.NoError(t, g.Close())
	require.Equal(t, 1, closed, "Close closes the device NewDevice opened")

	_, err = generate.NewDevice("tpu", m, ad)
	require.ErrorContains(t, err, `generate: device "tpu": accel: no backend "tpu" in this build`)
}
