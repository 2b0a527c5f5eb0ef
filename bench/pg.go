package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// freshDatabase creates an empty database next to the one connString names
// (the role needs CREATEDB), and returns its connection string and how to
// drop it.
func freshDatabase(ctx context.Context, connString, protocol string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("ct_exporter_bench_%s_%d", protocol, time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		conn.Close(ctx)
		return "", nil, err
	}
	drop := func() {
		conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		conn.Close(context.Background())
	}
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			drop()
			return "", nil, err
		}
		u.Path = "/" + name
		return u.String(), drop, nil
	}
	return connString + " dbname=" + name, drop, nil
}
