-- 0001: signing keys, replay cache, audit trail.
-- Times are UTC Unix nanoseconds (bigint), exactly as in the SQLite store, so
-- both keep the same instants; NULL stands for "not set". Lists are jsonb
-- arrays of strings. Later changes are new files (0002_...).

CREATE TABLE signing_keys (
	id          text   NOT NULL PRIMARY KEY,
	algorithm   text   NOT NULL,
	private_key bytea  NOT NULL,
	created_at  bigint NOT NULL,
	active_at   bigint,
	retired_at  bigint,
	remove_at   bigint
);

-- EnsureSigningKey looks up the unretired key of an algorithm.
CREATE INDEX signing_keys_current ON signing_keys (algorithm, created_at)
	WHERE retired_at IS NULL;

CREATE TABLE replay (
	issuer     text   NOT NULL,
	jti        text   NOT NULL,
	expires_at bigint NOT NULL,
	PRIMARY KEY (issuer, jti)
);

-- PurgeExpired deletes by expiry.
CREATE INDEX replay_expires_at ON replay (expires_at);

CREATE TABLE audit_events (
	id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	time          bigint NOT NULL,
	request_id    text   NOT NULL,
	client_ip     text   NOT NULL,
	action        text   NOT NULL,
	outcome       text   NOT NULL,
	error_code    text   NOT NULL,
	reason        text   NOT NULL,
	issuer        text   NOT NULL,
	subject       text   NOT NULL,
	policy        text   NOT NULL,
	candidates    jsonb  NOT NULL,
	token_type    text   NOT NULL,
	audience      jsonb  NOT NULL,
	scopes        jsonb  NOT NULL,
	credential_id text   NOT NULL,
	expires_at    bigint
);

-- Queries filter by one of these and return the newest first.
CREATE INDEX audit_events_time    ON audit_events (time);
CREATE INDEX audit_events_subject ON audit_events (subject, time);
CREATE INDEX audit_events_policy  ON audit_events (policy, time);
CREATE INDEX audit_events_outcome ON audit_events (outcome, time);
