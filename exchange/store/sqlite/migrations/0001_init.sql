-- 0001: signing keys, replay cache, audit trail.
-- Times are UTC Unix nanoseconds (INTEGER); NULL stands for "not set".
-- Lists are JSON arrays of strings. Later changes are new files (0002_...).

CREATE TABLE signing_keys (
	id          TEXT    NOT NULL PRIMARY KEY,
	algorithm   TEXT    NOT NULL,
	private_key BLOB    NOT NULL,
	created_at  INTEGER NOT NULL,
	active_at   INTEGER,
	retired_at  INTEGER,
	remove_at   INTEGER
) STRICT;

-- EnsureSigningKey looks up the unretired key of an algorithm.
CREATE INDEX signing_keys_current ON signing_keys (algorithm, created_at)
	WHERE retired_at IS NULL;

CREATE TABLE replay (
	issuer     TEXT    NOT NULL,
	jti        TEXT    NOT NULL,
	expires_at INTEGER NOT NULL,
	PRIMARY KEY (issuer, jti)
) STRICT, WITHOUT ROWID;

-- PurgeExpired deletes by expiry.
CREATE INDEX replay_expires_at ON replay (expires_at);

CREATE TABLE audit_events (
	id            INTEGER PRIMARY KEY,
	time          INTEGER NOT NULL,
	request_id    TEXT    NOT NULL,
	client_ip     TEXT    NOT NULL,
	action        TEXT    NOT NULL,
	outcome       TEXT    NOT NULL,
	error_code    TEXT    NOT NULL,
	reason        TEXT    NOT NULL,
	issuer        TEXT    NOT NULL,
	subject       TEXT    NOT NULL,
	policy        TEXT    NOT NULL,
	candidates    TEXT    NOT NULL,
	token_type    TEXT    NOT NULL,
	audience      TEXT    NOT NULL,
	scopes        TEXT    NOT NULL,
	credential_id TEXT    NOT NULL,
	expires_at    INTEGER
) STRICT;

-- Queries filter by one of these and return the newest first.
CREATE INDEX audit_events_time    ON audit_events (time);
CREATE INDEX audit_events_subject ON audit_events (subject, time);
CREATE INDEX audit_events_policy  ON audit_events (policy, time);
CREATE INDEX audit_events_outcome ON audit_events (outcome, time);
