package inbox

import "testing"

func TestMutedAt(t *testing.T) {
	for _, c := range []struct {
		toggles []int64
		pos     int64
		want    bool
	}{
		{nil, 10, false},
		{[]int64{5}, 10, true},
		{[]int64{5}, 5, false}, // a toggle at the message's own position is not before it
		{[]int64{5, -8}, 10, false},
		{[]int64{5, -8}, 7, true},
		{[]int64{-8, 5}, 10, false}, // the latest toggle decides, not the last appended
		{[]int64{-3, 12}, 10, false},
	} {
		if got := mutedAt(c.toggles, c.pos); got != c.want {
			t.Errorf("mutedAt(%v, %d) = %v, want %v", c.toggles, c.pos, got, c.want)
		}
	}
}
