package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"lens/builtins"
	"lens/engine/cuda"
	"lens/engine/gemm"
	"lens/engine/hf"
	"lens/engine/secret"
	"lens/engine/wandb"
)

// Environment variables are read only in cmd/lens: the engine, the store
// and the builtins get their values as options. This file reads those that
// configure them (LENS_STORE and LENS_PYTHON are read where their flags
// are defined).

// redactor removes the values of secret.Vars from the CLI's output and
// from what the store keeps.
func redactor() *secret.Redactor { return secret.FromEnv(os.Getenv) }

// hfToken is HF_TOKEN, the Hub token lens pushes with.
func envHFToken() secret.Token { return secret.Token(strings.TrimSpace(os.Getenv("HF_TOKEN"))) }

// hfEndpoint is HF_ENDPOINT, or hf.DefaultEndpoint when unset.
func envHFEndpoint() string {
	if e := strings.TrimSpace(os.Getenv("HF_ENDPOINT")); e != "" {
		return strings.TrimRight(e, "/")
	}
	return hf.DefaultEndpoint
}

// withIntegrations gives env the integrations' credentials and servers, so
// that scripts can push and log without ever holding a token.
func withIntegrations(env *builtins.Env) *builtins.Env {
	w := wandb.Options{}.FromEnv(os.Getenv)
	env.HFToken, env.HFEndpoint = envHFToken(), envHFEndpoint()
	env.WandbKey, env.WandbBaseURL = w.APIKey, w.BaseURL
	return env
}

// configureEngine applies LENS_GEMM (the matrix-product kernel) and
// LENS_CUDA_PROFILE (per-kernel timing on the GPU).
func configureEngine(stderr io.Writer) {
	if k := os.Getenv("LENS_GEMM"); k != "" {
		if err := gemm.Use(k); err != nil {
			fmt.Fprintf(stderr, "lens: LENS_GEMM: %v; using %s\n", err, gemm.Kernel())
		}
	}
	cuda.Profile.Store(os.Getenv("LENS_CUDA_PROFILE") != "")
}
