// Package pgstate keeps the exporter's state in PostgreSQL instead of the
// state file, so that replicas share it: the same issuances, counters,
// positions and cursors, with the state file's rules (package state) and
// guarantees. Every Commit is one PostgreSQL transaction; writers take
// turns under an advisory lock, so that the change numbers each bumps
// commit in order. Each replica keeps the in-memory mirror the metrics read
// (state.Mirror), brought up to date after its own commits, when another
// replica commits (LISTEN/NOTIFY) and periodically, from what changed since
// (by change number): a scrape never queries the database.
package pgstate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ct-exporter/ct_exporter/state"
)

// ErrNewerSchema is wrapped by Open's error for a database whose schema is
// newer than this build.
var ErrNewerSchema = errors.New("state: schema too new")

// channel is the NOTIFY channel of committed changes.
const channel = "ct_exporter_state"

// RefreshInterval is how often the mirror is refreshed when no
// notification arrives (a notification lost with a connection).
var RefreshInterval = 10 * time.Second

// opTimeout bounds one operation on the database.
const opTimeout = time.Minute

// maxAttempts bounds the retries of a transaction that fails on a
// serialization failure or a deadlock.
const maxAttempts = 10

// Options tune Open; the zero value is fine.
type Options struct {
	Now    func() time.Time // for tests
	Logger *slog.Logger
}

// Store is the state in a PostgreSQL database.
type Store struct {
	pool   *pgxpool.Pool
	name   string // the URL, password redacted
	logger *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	writeMu sync.Mutex // one transaction of ours at a time

	refreshMu sync.Mutex // guards what follows and orders the mirror's changes
	seq       uint64     // the change number the mirror reflects
	loaded    bool       // the counters were read once

	*state.Mirror
}

type beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Open connects to the database at url (a postgres:// or postgresql:// URL,
// or libpq's key=value form; PGPASSWORD, PGPASSFILE and ~/.pgpass hold as
// in libpq), creates or migrates the schema and loads the mirror.
func Open(connString string, opts Options) (*Store, error) {
	name := Redact(connString)
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgx's errors may quote the string: say only what is wrong.
		return nil, fmt.Errorf("state: --state.url %s cannot be parsed: %v", name, redactErr(err, connString))
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Store{name: name, logger: logger, ctx: ctx, cancel: cancel,
		Mirror: state.NewMirror(opts.Now)}
	octx, ocancel := context.WithTimeout(ctx, opTimeout)
	defer ocancel()
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = migrate(octx, s.pool)
	}
	if err == nil {
		err = s.refresh(octx)
	}
	if err != nil {
		cancel()
		if s.pool != nil {
			s.pool.Close()
		}
		if errors.Is(err, ErrNewerSchema) {
			return nil, fmt.Errorf("state: %s: %w", name, err)
		}
		return nil, fmt.Errorf("state: %s: %v", name, redactErr(err, connString))
	}
	s.wg.Add(1)
	go s.listen()
	return s, nil
}

// Name is the database's URL with its password redacted.
func (s *Store) Name() string { return s.name }

// Close stops the refreshes and closes the connections.
func (s *Store) Close() error {
	s.cancel()
	s.wg.Wait()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.pool.Close()
	return nil
}

var kvPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)`)

// Redact returns a connection string with its password replaced.
func Redact(connString string) string {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err != nil {
			return "postgres://(unparsable URL)"
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return kvPassword.ReplaceAllString(connString, "${1}xxxxx")
}

// redactErr is err's message with the password, should it appear, removed.
func redactErr(err error, connString string) string {
	msg := err.Error()
	cfg, perr := pgconn.ParseConfig(connString)
	if perr == nil && cfg.Password != "" {
		msg = strings.ReplaceAll(msg, cfg.Password, "xxxxx")
	}
	if u, perr := url.Parse(connString); perr == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// retryable reports whether a transaction failed on a conflict with
// another one and should run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "40001", "40P01": // serialization_failure, deadlock_detected
			return true
		}
	}
	return false
}

// write runs fn in a transaction under the writers' lock, retried on a
// conflict; a failure is a write error.
func (s *Store) write(fn func(ctx context.Context, tx pgx.Tx) error) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var err error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		err = s.writeOnce(fn)
		if err == nil || !retryable(err) {
			break
		}
	}
	if errors.Is(err, state.ErrFenced) {
		return err // refused, not failed
	}
	if err != nil {
		s.AddWriteError()
		return fmt.Errorf("state: write %s: %w", s.name, err)
	}
	return nil
}

func (s *Store) writeOnce(fn func(ctx context.Context, tx pgx.Tx) error) error {
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	tx, err := beginWrite(ctx, s.pool)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if err := fn(ctx, tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// beginWrite begins a transaction that writes, and takes the writers'
// advisory lock in it. Writers take turns: each statement after the lock
// sees every transaction committed before, and change numbers commit in
// order.
func beginWrite(ctx context.Context, db beginner) (pgx.Tx, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockKey)); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	return tx, nil
}

// read runs one read.
func (s *Store) read(fn func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(s.ctx, opTimeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		return fmt.Errorf("state: read %s: %w", s.name, err)
	}
	return nil
}

// Issuance returns the issuance with this tbs_sha256, or nil.
func (s *Store) Issuance(tbs [32]byte) (is *state.Issuance, err error) {
	err = s.read(func(ctx context.Context) error {
		is, err = issuance(ctx, s.pool, tbs)
		return err
	})
	return is, err
}

func issuance(ctx context.Context, q querier, tbs [32]byte) (*state.Issuance, error) {
	var rec []byte
	err := q.QueryRow(ctx, `SELECT record FROM issuances WHERE tbs_sha256 = $1`, tbs[:]).Scan(&rec)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return state.DecodeIssuance(tbs[:], rec)
}

// LogPosition returns a CT log's stored position, or nil.
func (s *Store) LogPosition(log string) (pos []byte, err error) {
	err = s.read(func(ctx context.Context) error {
		pos, err = bytesOrNil(s.pool.QueryRow(ctx, `SELECT position FROM log_positions WHERE log = $1`, log))
		return err
	})
	return pos, err
}

// Cursor returns a source's stored progress marker, or nil.
func (s *Store) Cursor(source string) (cursor []byte, err error) {
	err = s.read(func(ctx context.Context) error {
		cursor, err = bytesOrNil(s.pool.QueryRow(ctx, `SELECT cursor FROM cursors WHERE source = $1`, source))
		return err
	})
	return cursor, err
}

func bytesOrNil(row pgx.Row) ([]byte, error) {
	var b []byte
	err := row.Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if b == nil && err == nil {
		b = []byte{}
	}
	return b, err
}

// SeenID reports whether a source (crt.sh) already processed the
// certificate with this id, and the tbs_sha256 it had.
func (s *Store) SeenID(source string, id uint64) (tbs [32]byte, seen bool, err error) {
	err = s.read(func(ctx context.Context) error {
		var b []byte
		err := s.pool.QueryRow(ctx, `SELECT tbs_sha256 FROM processed_ids WHERE source = $1 AND id = $2`, source, int64(id)).Scan(&b)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(b) == 32 {
			copy(tbs[:], b)
			seen = true
		}
		return nil
	})
	return tbs, seen, err
}
