package worker

import "sync"

// revokedSet is a bounded set of ids: past its size the oldest are forgotten, as with
// Celery's LimitedSet (50,000 by default).
type revokedSet struct {
	mu    sync.Mutex
	max   int
	ids   map[string]struct{}
	order []string
}

func newRevokedSet(max int) *revokedSet {
	return &revokedSet{max: max, ids: map[string]struct{}{}}
}

func (s *revokedSet) Add(ids ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if _, ok := s.ids[id]; ok {
			continue
		}
		s.ids[id] = struct{}{}
		s.order = append(s.order, id)
		if len(s.order) > s.max {
			delete(s.ids, s.order[0])
			s.order = s.order[1:]
		}
	}
}

func (s *revokedSet) Contains(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	return ok
}
