package generate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// EOSIDs reads the end-of-sequence ids of an HF model directory, as
// transformers' generate does: eos_token_id of generation_config.json when
// that file sets it, else of config.json; an int or a list of ints. A
// directory that sets neither has none.
func EOSIDs(dir string) ([]int32, error) {
	for _, name := range []string{"generation_config.json", "config.json"} {
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read eos_token_id: %w", err)
		}
		var f struct {
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(f.EOS) == 0 || string(f.EOS) == "null" {
			continue
		}
		var one int32
		if err := json.Unmarshal(f.EOS, &one); err == nil {
			return []int32{one}, nil
		}
		var many []int32
		if err := json.Unmarshal(f.EOS, &many); err != nil {
			return nil, fmt.Errorf("%s: field eos_token_id = %s: want an int or a list of ints", path, f.EOS)
		}
		return many, nil
	}
	return nil, nil
}
