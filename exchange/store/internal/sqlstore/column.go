// Column encodings shared by both SQL stores, so SQLite and PostgreSQL keep
// identical data.
//
// Times are stored as UTC Unix nanoseconds in 64-bit integer columns: exact
// (a round trip returns the very same instant, which a microsecond
// timestamptz would not), ordered, and cheap to compare. The zero time is
// stored as NULL. Lists are stored as JSON arrays of strings.

package sqlstore

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// minTime and maxTime bound the instants that fit in int64 nanoseconds
// (years 1677 to 2262); time.Time.UnixNano is undefined outside them.
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

// ErrTimeRange is returned for a non-zero time that int64 nanoseconds since
// the Unix epoch cannot represent.
var ErrTimeRange = errors.New("time out of the storable range (years 1677 to 2262)")

// Nanos returns t as Unix nanoseconds. It refuses the zero time and any time
// outside the storable range.
func Nanos(t time.Time) (int64, error) {
	if t.IsZero() {
		return 0, errors.New("time is zero")
	}
	if t.Before(minTime) || t.After(maxTime) {
		return 0, fmt.Errorf("%w: %s", ErrTimeRange, t.UTC().Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

// NullNanos returns t as nullable Unix nanoseconds: NULL for the zero time.
func NullNanos(t time.Time) (sql.NullInt64, error) {
	if t.IsZero() {
		return sql.NullInt64{}, nil
	}
	n, err := Nanos(t)
	if err != nil {
		return sql.NullInt64{}, err
	}
	return sql.NullInt64{Int64: n, Valid: true}, nil
}

// Time returns the UTC time of n Unix nanoseconds.
func Time(n int64) time.Time {
	return time.Unix(0, n).UTC()
}

// NullTime returns the UTC time of n, or the zero time for NULL.
func NullTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return Time(n.Int64)
}

// List encodes a list as a JSON array; nil and empty lists both become "[]".
func List(l []string) string {
	if len(l) == 0 {
		return "[]"
	}
	b, err := json.Marshal(l)
	if err != nil {
		// Marshalling a []string cannot fail.
		panic(err)
	}
	return string(b)
}

// ParseList decodes a JSON array of strings; an empty array gives nil, so a
// nil list survives a round trip.
func ParseList(s string) ([]string, error) {
	var l []string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, fmt.Errorf("decode list column: %w", err)
	}
	if len(l) == 0 {
		return nil, nil
	}
	return l, nil
}
