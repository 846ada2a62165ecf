package testenv

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"

	"github.com/huddle-chat/huddle/internal/natsbroker"
)

func TestMain(m *testing.M) { Main(m) }

func TestPostgres_FreshMigratedDatabasePerTest(t *testing.T) {
	ctx := context.Background()
	var names []string
	for i := range 2 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			pool, url := Postgres(t)
			if url == "" {
				t.Fatal("empty url")
			}
			var migrated int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&migrated); err != nil {
				t.Fatalf("template not migrated: %v", err)
			}
			if migrated == 0 {
				t.Fatal("no migrations recorded")
			}
			var leftover bool
			if err := pool.QueryRow(ctx, `SELECT to_regclass('testenv_probe') IS NOT NULL`).Scan(&leftover); err != nil {
				t.Fatal(err)
			}
			if leftover {
				t.Fatal("saw a table another test created: databases are shared")
			}
			if _, err := pool.Exec(ctx, `CREATE TABLE testenv_probe (x int)`); err != nil {
				t.Fatal(err)
			}
			var name string
			if err := pool.QueryRow(ctx, `SELECT current_database()`).Scan(&name); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
		})
	}
	if len(names) != 2 || names[0] == names[1] {
		t.Fatalf("databases %v, want two distinct", names)
	}
	for _, name := range names {
		var exists bool
		if err := shared.admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
			t.Fatal(err)
		}
		if exists {
			t.Errorf("database %s not dropped at cleanup", name)
		}
	}
}

func TestPostgres_ParallelTests(t *testing.T) {
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			pool, _ := Postgres(t)
			var one int
			if err := pool.QueryRow(context.Background(), `SELECT 1`).Scan(&one); err != nil || one != 1 {
				t.Fatalf("query: %v", err)
			}
		})
	}
}

func TestPostgres_LeakedConnectionDoesNotBlockDrop(t *testing.T) {
	t.Run("leaks", func(t *testing.T) {
		_, url := Postgres(t)
		// Never closed: the cleanup's DROP … WITH (FORCE) must end it rather than fail.
		if _, err := pgx.Connect(context.Background(), url); err != nil {
			t.Fatal(err)
		}
	})
}

func TestNATS_StreamProvisioned(t *testing.T) {
	b := NATS(t)
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	if _, err := js.Publish("huddle.events.c1.directory.UserRegistered", []byte(`{}`)); err != nil {
		t.Fatalf("publish into HUDDLE_EVENTS: %v", err)
	}
	info, err := js.StreamInfo(natsbroker.StreamName)
	if err != nil || info.State.Msgs != 1 {
		t.Fatalf("stream info %v, %+v", err, info)
	}
}
