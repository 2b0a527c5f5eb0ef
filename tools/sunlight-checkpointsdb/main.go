// Command sunlight-checkpointsdb creates the SQLite checkpoints database that
// Sunlight's "checkpoints" lock backend requires. Sunlight refuses to create
// it itself, to protect against misconfiguration; its documentation says to
// run
//
//	sqlite3 checkpoints.db "CREATE TABLE checkpoints (logID BLOB PRIMARY KEY, body BLOB NOT NULL) STRICT"
//
// This command does the same with the SQLite that Sunlight links, so tests
// need no sqlite3 program installed.
//
// Usage: sunlight-checkpointsdb PATH
//
// It fails if PATH already exists.
package main

import (
	"fmt"
	"os"

	"crawshaw.io/sqlite"
	"crawshaw.io/sqlite/sqlitex"
)

const schema = "CREATE TABLE checkpoints (logID BLOB PRIMARY KEY, body BLOB NOT NULL) STRICT"

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sunlight-checkpointsdb PATH")
		os.Exit(2)
	}
	if err := create(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "sunlight-checkpointsdb:", err)
		os.Exit(1)
	}
}

func create(path string) error {
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s already exists", path)
	}
	conn, err := sqlite.OpenConn(path, sqlite.SQLITE_OPEN_READWRITE|sqlite.SQLITE_OPEN_CREATE|sqlite.SQLITE_OPEN_NOMUTEX)
	if err != nil {
		return err
	}
	if err := sqlitex.ExecTransient(conn, schema, nil); err != nil {
		conn.Close()
		return err
	}
	return conn.Close()
}
