package canvas

import "github.com/ccworker/ccworker/protocol"

// Unsent returns the ids of every task that req's callbacks and chain would have run:
// the remaining chain steps, the members of groups, the bodies and headers of chords,
// and what those link to in turn. When the callbacks of req cannot be sent (an
// unsupported signature type, a broker refusal), none of them will ever run, and a
// client waiting on one must get a FAILURE rather than wait forever. Errbacks are left
// out: they are sent when a task fails. Malformed parts are skipped.
func Unsent(req *protocol.Request) []string {
	var ids []string
	seen := map[string]bool{req.ID: true}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			if _, isSig := x["task"].(string); !isSig {
				return
			}
			opts, _ := x["options"].(map[string]any)
			// A group's task_id is the group's, not a task's: its members carry theirs.
			if st, _ := x["subtask_type"].(string); st != "group" {
				if id, _ := opts["task_id"].(string); id != "" && !seen[id] {
					seen[id] = true
					ids = append(ids, id)
				}
			}
			if kw, ok := x["kwargs"].(map[string]any); ok {
				walk(kw["tasks"])
				walk(kw["header"])
				walk(kw["body"])
			}
			walk(opts["link"])
			walk(opts["chain"])
			walk(opts["chord"])
		}
	}
	walk(req.Callbacks)
	walk(req.Chain)
	return ids
}
