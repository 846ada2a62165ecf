package config

import (
	"sort"
	"strings"
)

// Unknown is a HUDDLE_* variable that is set but that Load does not read: most likely a typo
// (HUDDLE_HTTP_ADR), which would otherwise leave the default in force without a word.
type Unknown struct {
	Name string
	// Closest is the known variable the name is most likely a misspelling of; empty when none
	// is close.
	Closest string
}

// UnknownVars lists the HUDDLE_* variables of environ (os.Environ's form) that Load does not
// read, sorted by name, each with the closest known name.
func UnknownVars(environ []string) []Unknown {
	var out []Unknown
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "HUDDLE_") || IsVar(name) {
			continue
		}
		out = append(out, Unknown{Name: name, Closest: closestVar(name)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// closestVar returns the known variable nearest to name by edit distance, if it is near
// enough to be a typo: at most a third of the part after HUDDLE_ differs.
func closestVar(name string) string {
	best, bestDist := "", -1
	for _, v := range Vars {
		d := editDistance(strings.TrimPrefix(name, "HUDDLE_"), strings.TrimPrefix(v.Name, "HUDDLE_"))
		if bestDist < 0 || d < bestDist {
			best, bestDist = v.Name, d
		}
	}
	if bestDist < 0 || bestDist*3 > len(strings.TrimPrefix(best, "HUDDLE_")) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes; variable names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
