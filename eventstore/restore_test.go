package eventstore_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/eventstore"
	"github.com/huddle-chat/huddle/internal/pgcluster"
	"github.com/huddle-chat/huddle/internal/testenv"
)

// TestRepairAfterRestore_RealDumpIntoFreshCluster does what an operator does: pg_dump the
// store, pg_restore it into a database of a brand-new cluster (whose transaction counter starts
// near zero), and run the repair that huddle migrate runs.
func TestRepairAfterRestore_RealDumpIntoFreshCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second PostgreSQL cluster")
	}
	t.Parallel()
	binDir, err := pgcluster.FindBinDir()
	if err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	pool, url := testenv.Postgres(t)
	s := eventstore.New(pool)

	// Make sure the source's transaction ids are well above what a fresh cluster starts at.
	if _, err := pool.Exec(ctx, `DO $$ BEGIN FOR i IN 1..3000 LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$`,
		pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		mustAppend(t, s, "conversation-dump", eventstore.ExpectAny, "", msg(i))
	}
	all := readAllEvents(t, s, 4)
	if err := s.SaveCheckpoint(ctx, "relay", eventstore.CheckpointOf(all[1])); err != nil {
		t.Fatal(err)
	}

	dump := filepath.Join(t.TempDir(), "huddle.dump")
	run(t, filepath.Join(binDir, "pg_dump"), "-Fc", "-f", dump, "-d", url)

	dir, err := os.MkdirTemp("", "huddle-restore-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	startCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	fresh, err := pgcluster.Start(startCtx, pgcluster.Options{Dir: filepath.Join(dir, "pg"), Settings: map[string]string{"shared_buffers": "16MB"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := fresh.Stop(stopCtx); err != nil {
			t.Error(err)
		}
	})
	if err := fresh.CreateDatabase(ctx, "restored"); err != nil {
		t.Fatal(err)
	}
	run(t, filepath.Join(binDir, "pg_restore"), "--no-owner", "-d", fresh.URL("restored"), dump)

	pool2, err := pgxpool.New(ctx, fresh.URL("restored"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool2.Close)
	s2 := eventstore.New(pool2)
	var behind bool
	if err := pool2.QueryRow(ctx, `SELECT max(tx_id) >= pg_current_xact_id() FROM events`).Scan(&behind); err != nil || !behind {
		t.Fatalf("setup: the fresh cluster's xid is not behind the restored tx ids (%v, %v)", behind, err)
	}
	mustAppend(t, s2, "conversation-dump", eventstore.ExpectAny, "", msg(4))
	cp, err := s2.LoadCheckpoint(ctx, "relay")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.ReadAll(ctx, cp, 100); err != nil || len(got) != 0 {
		t.Fatalf("setup: before repair the relay already sees %d events (%v)", len(got), err)
	}

	repaired, err := eventstore.RepairAfterRestore(ctx, pool2)
	if err != nil || !repaired {
		t.Fatalf("repair: repaired=%v err=%v", repaired, err)
	}
	cp, err = s2.LoadCheckpoint(ctx, "relay")
	if err != nil {
		t.Fatal(err)
	}
	rest, err := s2.ReadAll(ctx, cp, 100) // nothing else runs on this cluster
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 3 || rest[0].StreamVersion != 3 || rest[2].StreamVersion != 5 {
		t.Fatalf("after repair the relay resumes with versions %v, want [3 4 5]", versions(rest))
	}
	if r, err := s2.Verify(ctx, "conversation-dump"); err != nil || !r.OK || r.Events != 5 {
		t.Fatalf("verify restored stream: %+v %v", r, err)
	}
	if again, err := eventstore.RepairAfterRestore(ctx, pool2); err != nil || again {
		t.Fatalf("second repair: repaired=%v err=%v", again, err)
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(name), args, err, out)
	}
}
