package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"lens/engine/chat"
	"lens/engine/device"
	"lens/engine/generate"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/tokenize"
)

func cmdGenerate(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("generate", "--model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K] [--seed S] [--device cpu|cuda|auto]",
		"Continue TEXT with the model (and a PEFT adapter), streaming the text to stdout as it is generated; greedy unless --temperature > 0. "+
			"Stops at the model's eos_token_id (config.json / generation_config.json) or after --max-new-tokens", stderr)
	modelDir := fs.String("model", "", "HF model directory")
	adapterDir := fs.String("adapter", "", "PEFT adapter directory")
	prompt := fs.String("prompt", "", "the text to continue")
	maxNew := fs.Int("max-new-tokens", 64, "most tokens to generate")
	temp := fs.Float64("temperature", 0, "sampling temperature (0: greedy)")
	topP := fs.Float64("top-p", 1, "nucleus sampling: keep the most likely tokens up to this probability")
	topK := fs.Int("top-k", 0, "keep the K most likely tokens (0: all)")
	seed := fs.Uint64("seed", 0, "sampling seed; the same seed repeats the same text")
	dev := fs.String("device", "cpu", "where to decode: cpu, cuda, or auto (cuda when a GPU is usable, else the CPU)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *modelDir == "" {
		return usagef("want --model DIR and --prompt TEXT, no positional arguments")
	}
	where, note, err := device.Resolve(*dev)
	if err != nil {
		return usagef("--device: %v", err)
	}
	if note != "" {
		fmt.Fprintln(stderr, note)
	}
	m, err := model.Load(*modelDir)
	if err != nil {
		return err
	}
	var ad *lora.Adapter
	if *adapterDir != "" {
		if ad, err = lora.Load(*adapterDir, m); err != nil {
			return err
		}
	}
	ids, tok, err := encodePrompt(*modelDir, *prompt)
	if err != nil {
		return err
	}
	g, err := generate.NewDevice(where, m, ad)
	if err != nil {
		return err
	}
	defer g.Close()
	eos, err := generate.EOSIDs(*modelDir)
	if err != nil {
		return err
	}
	opts := generate.Options{MaxNewTokens: *maxNew, Temperature: *temp, TopP: *topP, TopK: *topK, Seed: *seed, StopIDs: eos}
	ctx, stop := interruptible(stderr)
	defer stop()
	var out []int32
	printed := ""
	emit := func(id int32) error {
		for _, e := range eos {
			if id == e {
				return nil // not printed
			}
		}
		out = append(out, id)
		// Decode the whole output and print what is new, so that tokens
		// which only make sense together (bytes of one character, a
		// leading space) come out right.
		text := tok.Decode(out)
		if strings.HasPrefix(text, printed) && len(text) > len(printed) {
			if _, err := io.WriteString(stdout, text[len(printed):]); err != nil {
				return err
			}
			printed = text
		}
		return nil
	}
	if _, err := g.Generate(ctx, ids, opts, emit); err != nil {
		return err
	}
	if text := tok.Decode(out); text != printed && strings.HasPrefix(text, printed) {
		io.WriteString(stdout, text[len(printed):])
	}
	fmt.Fprintln(stdout)
	return nil
}

// encodePrompt encodes text as transformers' tokenizer(text) would: with
// the directory's tokenizer.json and tokenizer_config.json (BOS when it
// asks for one, spelled special tokens as such), or as bytes when the
// directory has no tokenizer.json.
func encodePrompt(dir, text string) ([]int32, tokenize.Tokenizer, error) {
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); errors.Is(err, fs.ErrNotExist) {
		tok := tokenize.NewByte()
		return tok.Encode(text), tok, nil
	}
	ct, err := chat.LoadTokenizer(dir)
	if err != nil {
		return nil, nil, err
	}
	return ct.Encode(text, true), ct.BPE, nil
}
