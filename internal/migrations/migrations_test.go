package migrations_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/huddle-chat/huddle/internal/migrations"
	"github.com/huddle-chat/huddle/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestAll_NamesAreOrderedAndUnique(t *testing.T) {
	all, err := migrations.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 4 {
		t.Fatalf("%d migrations embedded", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].Version <= all[i-1].Version {
			t.Errorf("%s after %s", all[i].Name, all[i-1].Name)
		}
	}
}

// TestUp_ConcurrentInstancesApplyEachMigrationOnce starts from an empty database (not the
// migrated template) with several migrators at once, as several instances starting together.
func TestUp_ConcurrentInstancesApplyEachMigrationOnce(t *testing.T) {
	ctx := context.Background()
	admin, _ := testenv.Postgres(t)
	if _, err := admin.Exec(ctx, `CREATE DATABASE migrate_empty`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), `DROP DATABASE migrate_empty WITH (FORCE)`) })
	pool, err := pgxpool.New(ctx, testenv.ClusterURL(t, "migrate_empty"))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	all, _ := migrations.All()
	var mu sync.Mutex
	applied := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names, err := migrations.Up(ctx, pool)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, n := range names {
				applied[n]++
			}
		}()
	}
	wg.Wait()
	for _, m := range all {
		if applied[m.Name] != 1 {
			t.Errorf("%s applied %d times, want once", m.Name, applied[m.Name])
		}
	}
	again, err := migrations.Up(ctx, pool)
	if err != nil || len(again) != 0 {
		t.Errorf("second Up applied %v (%v), want nothing", again, err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(all) {
		t.Errorf("schema_migrations has %d rows (%v), want %d", n, err, len(all))
	}
}
