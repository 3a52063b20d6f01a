// Package registry is a concurrency-safe map from names to registrations,
// shared by the collector and analyzer registries.
package registry

import (
	"sort"
	"sync"
)

// Map holds registrations of type T by name.
type Map[T any] struct {
	mu sync.Mutex
	m  map[string]T
}

// Set adds or replaces the registration of name.
func (r *Map[T]) Set(name string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]T{}
	}
	r.m[name] = v
}

// Get returns the registration of name.
func (r *Map[T]) Get(name string) (T, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.m[name]
	return v, ok
}

// Names lists the registered names, sorted.
func (r *Map[T]) Names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.m))
	for n := range r.m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
