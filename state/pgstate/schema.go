package pgstate

import (
	"context"
	"fmt"
)

// migrations are the schema's versions, in order: migrations[i] makes
// version i+1. A released migration is never changed; a new one is added.
var migrations = []string{
	// 1: the tables. Columns are what a SQL reader needs; record holds the
	// issuance as the state file keeps it (state.EncodeIssuance), which is
	// what the exporter reads back, so that both stores judge alike.
	`
CREATE TABLE ct_changes (
	id         integer PRIMARY KEY CHECK (id = 1),
	seq        bigint NOT NULL,  -- bumped by every transaction that writes
	issuances  bigint NOT NULL   -- rows of issuances
);
INSERT INTO ct_changes VALUES (1, 0, 0);

CREATE TABLE issuances (
	tbs_sha256     bytea PRIMARY KEY,
	cert_sha256    bytea NOT NULL,
	serial         text NOT NULL,
	issuer_cn      text NOT NULL,
	issuer_o       text NOT NULL,
	issuer_dn      text NOT NULL,
	subject_cn     text NOT NULL,
	dns_names      text[] NOT NULL,
	ip_addresses   text[] NOT NULL,
	not_before     timestamptz,
	not_after      timestamptz,
	embedded_scts  integer NOT NULL, -- -1 until the final certificate is seen
	parse_error    text NOT NULL,
	first_seen     timestamptz NOT NULL,
	expires        timestamptz NOT NULL, -- pruned after this (and the grace)
	changed        bigint NOT NULL,      -- ct_changes.seq of the last change
	record         bytea NOT NULL
);
CREATE INDEX issuances_expires ON issuances (expires);
CREATE INDEX issuances_changed ON issuances (changed);

CREATE TABLE issuance_watches (
	tbs_sha256  bytea NOT NULL REFERENCES issuances ON DELETE CASCADE,
	watch       text NOT NULL,
	first_seen  timestamptz NOT NULL,
	verdict     text NOT NULL,   -- when first seen (the counter's label)
	changed     bigint NOT NULL,
	ordinal     integer NOT NULL, -- order within its change
	PRIMARY KEY (tbs_sha256, watch)
);
CREATE INDEX issuance_watches_first_seen ON issuance_watches (first_seen);
CREATE INDEX issuance_watches_changed ON issuance_watches (changed);

CREATE TABLE counters (
	name     text NOT NULL,
	labels   text[] NOT NULL,
	value    bigint NOT NULL,
	changed  bigint NOT NULL,
	PRIMARY KEY (name, labels)
);
CREATE INDEX counters_changed ON counters (changed);

CREATE TABLE log_positions (
	log       text PRIMARY KEY,
	position  bytea NOT NULL
);

CREATE TABLE cursors (
	source  text PRIMARY KEY,
	cursor  bytea NOT NULL
);

CREATE TABLE processed_ids (
	source      text NOT NULL,
	id          bigint NOT NULL,
	tbs_sha256  bytea NOT NULL,
	not_after   timestamptz NOT NULL,
	PRIMARY KEY (source, id)
);
CREATE INDEX processed_ids_not_after ON processed_ids (not_after);
`,
	// 2: leases, so that replicas share the sources: each source is
	// followed by the replica holding its lease (holder '' when released);
	// epoch grows with every acquisition and fences commits. replicas is
	// the heartbeat of the live replicas, by which they balance. Times are
	// the database's (now()), never a replica's clock.
	`
CREATE TABLE leases (
	source      text PRIMARY KEY,
	holder      text NOT NULL,
	epoch       bigint NOT NULL,
	expires_at  timestamptz NOT NULL
);

CREATE TABLE replicas (
	id          text PRIMARY KEY,
	expires_at  timestamptz NOT NULL
);
`,
	// 3: the stable, read-only SQL interface (docs/sql.md): views whose
	// columns are only ever added to, so that queries and dashboards keep
	// working when the tables change.
	`
CREATE VIEW ct_certificates AS
SELECT
	w.watch,
	w.verdict,
	w.first_seen,
	encode(i.tbs_sha256, 'hex') AS tbs_sha256,
	nullif(encode(i.cert_sha256, 'hex'), repeat('0', 64)) AS cert_sha256,
	CASE WHEN i.issuer_cn <> '' THEN i.issuer_cn ELSE i.issuer_o END AS issuer,
	i.issuer_cn,
	i.issuer_o,
	i.issuer_dn,
	i.serial,
	i.subject_cn,
	i.dns_names,
	i.ip_addresses,
	i.not_before,
	i.not_after,
	nullif(i.embedded_scts, -1) AS embedded_scts,
	nullif(i.parse_error, '') AS parse_error,
	i.first_seen AS issuance_first_seen
FROM issuance_watches w
JOIN issuances i ON i.tbs_sha256 = w.tbs_sha256;

CREATE INDEX issuance_watches_watch_first_seen ON issuance_watches (watch, first_seen);

CREATE VIEW ct_counters AS
SELECT name, labels, value FROM counters;
`,
}

// SchemaVersion is the schema version this build creates and reads.
var SchemaVersion = len(migrations)

// lockKey is the advisory lock of migrations and of every write: writers
// take turns, so that change numbers commit in order.
const lockKey = 0x63745f6578706f72 // "ct_expor"

// migrate brings the schema to SchemaVersion in one transaction, under the
// advisory lock, and refuses a schema newer than this build.
func migrate(ctx context.Context, db beginner) error {
	tx, err := beginWrite(ctx, db)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS ct_exporter_schema (
	version  integer PRIMARY KEY,
	applied  timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return err
	}
	var v int
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM ct_exporter_schema`).Scan(&v); err != nil {
		return err
	}
	if v > SchemaVersion {
		return fmt.Errorf("%w: the database has schema version %d, this ct_exporter knows versions up to %d. "+
			"It was left untouched: run a ct_exporter at least as new as the one that migrated it", ErrNewerSchema, v, SchemaVersion)
	}
	for ; v < SchemaVersion; v++ {
		if _, err := tx.Exec(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migration to schema version %d: %w", v+1, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ct_exporter_schema (version) VALUES ($1)`, v+1); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}
