package gemm

import (
	"sync"
	"sync/atomic"
)

// The parallel parts of a product run on long-lived worker goroutines fed
// through a channel rather than on fresh goroutines: with the per-call
// state taken from a pool, a parallel Sgemm allocates nothing (a training
// step makes hundreds of them).

// job is work split into parts that may run concurrently.
type job interface{ runPart(part int) }

// pending counts the queued parts of one fanOut call that have not
// finished; the last one to finish signals done.
type pending struct {
	left atomic.Int32
	done chan struct{}
}

func (p *pending) finish() {
	if p.left.Add(-1) == 0 {
		p.done <- struct{}{}
	}
}

type task struct {
	j    job
	part int
	p    *pending
}

var (
	tasks     = make(chan task, 256)
	workersMu sync.Mutex
	nWorkers  atomic.Int32
)

// ensureWorkers starts workers until at least n are running. Workers are
// never stopped; an idle one is a goroutine blocked on a channel.
func ensureWorkers(n int) {
	if int(nWorkers.Load()) >= n {
		return
	}
	workersMu.Lock()
	defer workersMu.Unlock()
	for int(nWorkers.Load()) < n {
		go func() {
			for t := range tasks {
				t.j.runPart(t.part)
				t.p.finish()
			}
		}()
		nWorkers.Add(1)
	}
}

// fanOut runs parts 1..parts-1 of j on the workers and part 0 on the
// calling goroutine, and returns when all are done; p must be idle. Parts
// may fan out themselves (attention runs heads in parallel, and each head
// makes products): a caller waiting for its parts runs queued tasks, its
// own or others', so a worker that waits inside a part never starves the
// queue.
func fanOut(j job, parts int, p *pending) {
	if parts <= 1 {
		j.runPart(0)
		return
	}
	ensureWorkers(parts - 1)
	if p.done == nil {
		p.done = make(chan struct{}, 1)
	}
	p.left.Store(int32(parts - 1))
	for i := 1; i < parts; i++ {
		select {
		case tasks <- task{j, i, p}:
		default: // queue full: run it here
			j.runPart(i)
			p.finish()
		}
	}
	j.runPart(0)
	for {
		select {
		case <-p.done:
			return
		case t := <-tasks:
			t.j.runPart(t.part)
			t.p.finish()
		}
	}
}

// forJob is a ParallelFor call.
type forJob struct {
	fn       func(w, lo, hi int)
	n, chunk int
	wait     pending
}

func (f *forJob) runPart(w int) {
	lo := w * f.chunk
	f.fn(w, lo, min(f.n, lo+f.chunk))
}

var forPool = sync.Pool{New: func() any { return new(forJob) }}

// ParallelFor splits [0, n) into at most workers contiguous chunks of at
// least minChunk elements (the last may be shorter) and calls fn(w, lo, hi)
// for chunk w concurrently, on the same worker goroutines as Sgemm. Chunk
// boundaries depend only on n, minChunk and workers, so a caller whose
// chunks write disjoint outputs gets results that do not depend on
// scheduling.
func ParallelFor(n, minChunk, workers int, fn func(w, lo, hi int)) {
	workers = min(workers, max(1, n/max(1, minChunk)))
	if workers <= 1 || n <= 1 {
		fn(0, 0, n)
		return
	}
	chunk := (n + workers - 1) / workers
	parts := (n + chunk - 1) / chunk
	f := forPool.Get().(*forJob)
	f.fn, f.n, f.chunk = fn, n, chunk
	fanOut(f, parts, &f.wait)
	f.fn = nil
	forPool.Put(f)
}
