package pgtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestServer(t *testing.T) {
	s := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	url := s.CreateDB(t, "one")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (v int); INSERT INTO t VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	// TCP connections need the password.
	noPassword := strings.Replace(url, ":"+Password+"@", "@", 1)
	if c, err := pgx.Connect(ctx, noPassword); err == nil {
		c.Close(ctx)
		t.Fatal("connected over TCP without a password")
	}

	// A committed row survives a crash of the server.
	s.Restart(t)
	conn, err = pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("after restart: %v\n%s", err, s.Log())
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, "SELECT v FROM t").Scan(&v); err != nil || v != 42 {
		t.Fatalf("after restart: v = %d, %v; want 42", v, err)
	}
}
