package commands

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/blobs"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// BenchmarkSendMessage measures one text message end to end on the write side, one sender at
// a time: the directory and the conversation from memory, decide, append with the hash chain.
func BenchmarkSendMessage(b *testing.B) {
	pool, _ := testenv.Postgres(b)
	h := New(eventstore.New(pool), blobs.New(pool), Options{})
	ctx := context.Background()
	admin := actor("admin")
	if _, _, err := h.NameRoom(ctx, admin, "r1", "Room"); err != nil {
		b.Fatal(err)
	}
	for i := range 50 {
		u := fmt.Sprintf("u%02d", i)
		if _, _, err := h.SetUser(ctx, admin, u, u, u+"@c.test", ""); err != nil {
			b.Fatal(err)
		}
		if _, err := h.AddRoomMember(ctx, admin, "r1", u); err != nil {
			b.Fatal(err)
		}
	}
	g, err := h.StartConversation(ctx, actor("u00"), []string{"u01", "u02", "u03"}, ptr("Bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if _, err := h.SendMessage(ctx, actor("u01"), g.ID, "hello there", fmt.Sprintf("b-%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	// Wall time on a shared machine says little; the CPU this process spent per send does.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is the user plus system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
