package control

import (
	"container/heap"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Defaults of Celery's worker_state.revoked (celery/worker/state.py).
const (
	DefaultRevokesMax    = 50000
	DefaultRevokeExpires = 10800 * time.Second
)

// Revoked is the set of revoked task ids with the semantics of Celery's LimitedSet as the
// worker uses it: at most Max ids (adding to a full set drops the oldest), and once the set is
// full, ids older than Expires are purged too. Re-adding an id refreshes its time. Lookups never
// purge. It is safe for concurrent use.
type Revoked struct {
	max     int
	expires time.Duration
	now     func() time.Time

	mu   sync.Mutex
	data map[string]time.Time
	h    revokedHeap
}

// NewRevoked returns an empty set; max <= 0 means unlimited, expires <= 0 never expires.
func NewRevoked(max int, expires time.Duration) *Revoked {
	return &Revoked{max: max, expires: expires, now: time.Now, data: map[string]time.Time{}}
}

// NewRevokedFromEnv returns a set with Celery's defaults, overridden like Celery 5.3+ by the
// environment variables CELERY_WORKER_REVOKES_MAX (count) and CELERY_WORKER_REVOKE_EXPIRES
// (seconds) when they hold valid numbers.
func NewRevokedFromEnv() *Revoked {
	max, expires := DefaultRevokesMax, DefaultRevokeExpires
	if n, err := strconv.Atoi(os.Getenv("CELERY_WORKER_REVOKES_MAX")); err == nil && n >= 0 {
		max = n
	}
	if f, err := strconv.ParseFloat(os.Getenv("CELERY_WORKER_REVOKE_EXPIRES"), 64); err == nil && f >= 0 {
		expires = time.Duration(f * float64(time.Second))
	}
	return NewRevoked(max, expires)
}

// Add marks ids as revoked (now).
func (r *Revoked) Add(ids ...string) {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		r.addLocked(id, now)
	}
}

// addAt adds id with a given insertion time (ids merged from a peer's mingle hello).
func (r *Revoked) addAt(id string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addLocked(id, at)
}

func (r *Revoked) addLocked(id string, at time.Time) {
	r.data[id] = at
	heap.Push(&r.h, revokedEntry{at: at, id: id})
	if r.max > 0 && len(r.data) >= r.max {
		r.purgeLocked(r.now())
	}
	// Stale heap entries (re-added ids) are dropped lazily; rebuild when they pile up.
	if len(r.h) > 2*len(r.data)+64 {
		r.rebuildLocked()
	}
}

func (r *Revoked) rebuildLocked() {
	r.h = r.h[:0]
	for id, at := range r.data {
		r.h = append(r.h, revokedEntry{at: at, id: id})
	}
	heap.Init(&r.h)
}

// purgeLocked is LimitedSet.purge: enforce max, then drop expired ids (oldest first).
func (r *Revoked) purgeLocked(now time.Time) {
	for r.max > 0 && len(r.data) > r.max {
		r.popLocked()
	}
	if r.expires > 0 {
		for len(r.data) > 0 {
			e := r.oldestLocked()
			if e.at.Add(r.expires).After(now) {
				break
			}
			r.popLocked()
		}
	}
}

// oldestLocked returns the oldest live entry, discarding stale heap entries.
func (r *Revoked) oldestLocked() revokedEntry {
	for len(r.h) > 0 {
		e := r.h[0]
		if at, ok := r.data[e.id]; ok && at.Equal(e.at) {
			return e
		}
		heap.Pop(&r.h)
	}
	return revokedEntry{}
}

func (r *Revoked) popLocked() {
	e := r.oldestLocked()
	if len(r.h) == 0 {
		return
	}
	heap.Pop(&r.h)
	delete(r.data, e.id)
}

// Purge drops expired ids now (Celery does this before answering a mingle hello).
func (r *Revoked) Purge() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.purgeLocked(r.now())
}

// Contains reports whether id is revoked.
func (r *Revoked) Contains(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.data[id]
	return ok
}

// Len returns the number of ids.
func (r *Revoked) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.data)
}

// List returns the ids, oldest first.
func (r *Revoked) List() []string {
	r.mu.Lock()
	entries := make([]revokedEntry, 0, len(r.data))
	for id, at := range r.data {
		entries = append(entries, revokedEntry{at: at, id: id})
	}
	r.mu.Unlock()
	slices.SortFunc(entries, compareEntries)
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = e.id
	}
	return ids
}

// snapshot returns id → insertion time.
func (r *Revoked) snapshot() map[string]time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]time.Time, len(r.data))
	for id, at := range r.data {
		m[id] = at
	}
	return m
}

type revokedEntry struct {
	at time.Time
	id string
}

func compareEntries(a, b revokedEntry) int {
	if c := a.at.Compare(b.at); c != 0 {
		return c
	}
	switch {
	case a.id < b.id:
		return -1
	case a.id > b.id:
		return 1
	}
	return 0
}

type revokedHeap []revokedEntry

func (h revokedHeap) Len() int           { return len(h) }
func (h revokedHeap) Less(i, j int) bool { return compareEntries(h[i], h[j]) < 0 }
func (h revokedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *revokedHeap) Push(x any)        { *h = append(*h, x.(revokedEntry)) }
func (h *revokedHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
