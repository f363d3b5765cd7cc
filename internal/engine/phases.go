package engine

import "time"

// Phase is one step of an apply or a revert and the wall time it took. The
// reports carry them so that where the time goes can be read off a real run
// (`hotpatch apply --json`, hotpatch-bench's latency table) instead of being
// guessed.
type Phase struct {
	Name string        `json:"name"`
	Took time.Duration `json:"ns"`
}

// timeline records consecutive phases.
type timeline struct {
	last   time.Time
	phases []Phase
}

func newTimeline(start time.Time) *timeline { return &timeline{last: start} }

// mark ends the current phase, naming it.
func (tl *timeline) mark(name string) {
	now := time.Now()
	tl.phases = append(tl.phases, Phase{Name: name, Took: now.Sub(tl.last)})
	tl.last = now
}
