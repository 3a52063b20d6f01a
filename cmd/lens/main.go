// Command lens runs LoRA experiments written in Starlark and keeps every
// run in an embedded store. See `lens help`.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // script or run failure
	exitUsage = 2 // bad command line
)

// usageError marks command-line mistakes (exit 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

type command struct {
	name, args, summary string
	run                 func(args []string, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"run", "FILE.star [-- KEY=VALUE ...]", "run an experiment script", cmdRun},
		{"repl", "", "interactive Starlark session over the builtins and the store", cmdRepl},
		{"runs", "", "list stored runs", cmdRuns},
		{"show", "RUN", "show a run: config, status, metrics, checkpoints, events", cmdShow},
		{"rm", "RUN...", "delete runs from the store", cmdRm},
		{"eval", "--model DIR [--adapter DIR] --text FILE", "mean next-token loss of a model on a text file", cmdEval},
		{"generate", "--model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N ...]", "continue a prompt with a model (and adapter), streaming the text", cmdGenerate},
		{"export", "RUN --out DIR [--step N] [--with-base] | RUN --tensorboard DIR", "write a run's adapter as a PEFT directory, or the run as TensorBoard event files", cmdExport},
		{"push", "RUN --repo OWNER/NAME [--all-checkpoints]", "upload a run's adapter and a model card to the Hugging Face Hub", cmdPush},
		{"wandb", "sync [DIR] | upload RUN --project P", "upload offline W&B folders, or a stored run, to Weights & Biases", cmdWandb},
		{"test", "[--run REGEX] [PATH...]", "run the test_ functions of *_test.star files", cmdTest},
		{"report", "RUN [RUN...] [--kind K] [--html FILE]", "standard report of a run, or a comparison of runs", cmdReport},
		{"bench", "[--sizes S] [--steps N] [--json]", "time a LoRA step in lens and PyTorch side by side", cmdBench},
		{"fsck", "", "check a store for corrupt or inconsistent data, changing nothing", cmdFsck},
		{"gc", "[--json]", "give back the disk space of deleted runs and rotated checkpoints now", cmdGC},
		{"sweep", "status SWEEP", "a sweep's trials: state, steps, best eval loss, backend job", cmdSweep},
		{"trial", "run SWEEP_DIR TRIAL_ID [--threads N]", "run one sweep trial into its store shard (sweep backends call it)", cmdTrial},
		{"ui", "[--addr 127.0.0.1:7070] [--token T|random]", "serve a live, read-only web view of the store (runs, run pages, compare, sweeps)", cmdUI},
		{"merge", "SHARD_DIR... [--into STORE]", "merge the runs of store shards into a store", cmdMerge},
		{"version", "", "print the lens version", cmdVersion},
		{"help", "[COMMAND|NAME]", "explain a command, or a script module, builtin or value (lens help lens.train; --markdown: docs/API.md)", nil},
	}
}

func main() { os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr)) }

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	// Credentials never reach the terminal or a log file (engine/secret).
	red := redactor()
	stdout, stderr = red.Writer(stdout), red.Writer(stderr)
	configureEngine(stderr)
	if len(args) == 0 {
		printHelp(stderr)
		return exitUsage
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		if len(args) > 1 {
			for _, c := range commands {
				if c.name == args[1] && c.run != nil {
					c.run([]string{"-h"}, stdout, stdout)
					return exitOK
				}
			}
			if helpAPI(args[1], stdout) {
				return exitOK
			}
		}
		printHelp(stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == name && c.run != nil {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil:
				return exitOK
			case errors.Is(err, flag.ErrHelp):
				return exitOK
			case errors.As(err, new(usageError)):
				fmt.Fprintf(stderr, "lens %s: %v\n", name, err)
				return exitUsage
			case errors.As(err, new(exitCodeError)):
				return exitCodeOf(err, stderr, name)
			case errors.Is(err, errReported):
				return exitFail
			default:
				fmt.Fprintf(stderr, "lens %s: %v\n", name, err)
				return exitFail
			}
		}
	}
	fmt.Fprintf(stderr, "lens: unknown command %q\n\n", name)
	printHelp(stderr)
	return exitUsage
}

// errReported means the error was already printed.
var errReported = errors.New("reported")

func printHelp(w io.Writer) {
	fmt.Fprintf(w, "lens: see what LoRA fine-tuning does.\n\nUsage: lens COMMAND [flags]\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %-42s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "\nEvery command takes --store DIR (default ./.lens, or $LENS_STORE). `lens CMD -h` lists a command's flags.\n")
}

// newFlags returns a flag set that prints its usage to w and reports
// errors instead of exiting.
func newFlags(name, args, summary string, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lens "+name, flag.ContinueOnError)
	fs.SetOutput(w)
	fs.Usage = func() {
		fmt.Fprintf(w, "Usage: lens %s %s\n\n%s.\n\nFlags:\n", name, args, summary)
		fs.PrintDefaults()
	}
	return fs
}

func storeFlag(fs *flag.FlagSet) *string {
	def := os.Getenv("LENS_STORE")
	if def == "" {
		def = ".lens"
	}
	return fs.String("store", def, "store directory (env LENS_STORE)")
}

// parse parses flags, turning flag errors into usage errors. Flags may
// come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos, tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i:]
			break
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
