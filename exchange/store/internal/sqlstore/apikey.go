package sqlstore

import (
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tokenbroker/tokenbroker/exchange"
)

// APIKeyColumns lists the api_keys columns in the order of APIKeyRow.Args and
// APIKeyRow.Dest.
const APIKeyColumns = "hash, id, subject, issuer, policy, audience, scopes, metadata, created_at, expires_at, uses, remaining, revoked_at"

// DefaultAPIKeyLimit is the number of keys a listing returns when its Limit
// is zero (exchange.APIKeyQuery documents it).
const DefaultAPIKeyLimit = 100

// APIKeyLimit returns the effective limit of q.
func APIKeyLimit(q exchange.APIKeyQuery) int {
	if q.Limit <= 0 {
		return DefaultAPIKeyLimit
	}
	return q.Limit
}

// APIKeyRow is an API key in its column encoding. Remaining is NULL for a
// key without a use limit, so the decrement's "remaining > 0" never matches
// it.
type APIKeyRow struct {
	Hash      []byte
	ID        string
	Subject   string
	Issuer    string
	Policy    string
	Audience  string
	Scopes    string
	Metadata  string
	CreatedAt int64
	ExpiresAt int64
	Uses      int64
	Remaining sql.NullInt64
	RevokedAt sql.NullInt64
}

// CheckHash refuses anything but a SHA-256 digest.
func CheckHash(hash []byte) error {
	if len(hash) != sha256.Size {
		return fmt.Errorf("API key hash is %d bytes, want %d", len(hash), sha256.Size)
	}
	return nil
}

// EncodeAPIKey checks k and returns its column encoding.
func EncodeAPIKey(k exchange.APIKey) (APIKeyRow, error) {
	switch {
	case k.ID == "":
		return APIKeyRow{}, errors.New("API key without id")
	case k.Policy == "":
		return APIKeyRow{}, fmt.Errorf("API key %q without policy", k.ID)
	case k.Uses < 0 || k.Remaining < 0 || k.Remaining > k.Uses:
		return APIKeyRow{}, fmt.Errorf("API key %q: remaining %d of %d uses", k.ID, k.Remaining, k.Uses)
	case !k.ExpiresAt.After(k.CreatedAt):
		return APIKeyRow{}, fmt.Errorf("API key %q expires before it is created", k.ID)
	}
	if err := CheckHash(k.Hash); err != nil {
		return APIKeyRow{}, fmt.Errorf("API key %q: %w", k.ID, err)
	}
	r := APIKeyRow{
		Hash: k.Hash, ID: k.ID, Subject: k.Subject, Issuer: k.Issuer, Policy: k.Policy,
		Audience: List(k.Audience), Scopes: List(k.Scopes), Metadata: Map(k.Metadata), Uses: k.Uses,
	}
	if k.Uses > 0 {
		r.Remaining = sql.NullInt64{Int64: k.Remaining, Valid: true}
	}
	var err error
	if r.CreatedAt, err = Nanos(k.CreatedAt); err != nil {
		return APIKeyRow{}, fmt.Errorf("API key %q created_at: %w", k.ID, err)
	}
	if r.ExpiresAt, err = Nanos(k.ExpiresAt); err != nil {
		return APIKeyRow{}, fmt.Errorf("API key %q expires_at: %w", k.ID, err)
	}
	if r.RevokedAt, err = NullNanos(k.RevokedAt); err != nil {
		return APIKeyRow{}, fmt.Errorf("API key %q revoked_at: %w", k.ID, err)
	}
	return r, nil
}

// Args returns the values of r in APIKeyColumns order.
func (r *APIKeyRow) Args() []any {
	return []any{r.Hash, r.ID, r.Subject, r.Issuer, r.Policy, r.Audience, r.Scopes, r.Metadata,
		r.CreatedAt, r.ExpiresAt, r.Uses, r.Remaining, r.RevokedAt}
}

// Dest returns scan targets in APIKeyColumns order.
func (r *APIKeyRow) Dest() []any {
	return []any{&r.Hash, &r.ID, &r.Subject, &r.Issuer, &r.Policy, &r.Audience, &r.Scopes, &r.Metadata,
		&r.CreatedAt, &r.ExpiresAt, &r.Uses, &r.Remaining, &r.RevokedAt}
}

// APIKey decodes r.
func (r *APIKeyRow) APIKey() (exchange.APIKey, error) {
	k := exchange.APIKey{
		ID: r.ID, Hash: r.Hash, Subject: r.Subject, Issuer: r.Issuer, Policy: r.Policy,
		CreatedAt: Time(r.CreatedAt), ExpiresAt: Time(r.ExpiresAt), Uses: r.Uses,
		Remaining: r.Remaining.Int64, RevokedAt: NullTime(r.RevokedAt),
	}
	var err error
	if k.Audience, err = ParseList(r.Audience); err != nil {
		return exchange.APIKey{}, fmt.Errorf("API key %q: %w", r.ID, err)
	}
	if k.Scopes, err = ParseList(r.Scopes); err != nil {
		return exchange.APIKey{}, fmt.Errorf("API key %q: %w", r.ID, err)
	}
	if k.Metadata, err = ParseMap(r.Metadata); err != nil {
		return exchange.APIKey{}, fmt.Errorf("API key %q: %w", r.ID, err)
	}
	return k, nil
}

// Map encodes a string map as a JSON object; nil and empty maps both become
// "{}".
func Map(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, err := json.Marshal(m)
	if err != nil {
		// Marshalling a map[string]string cannot fail.
		panic(err)
	}
	return string(b)
}

// ParseMap decodes a JSON object of strings; an empty object gives nil.
func ParseMap(s string) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("decode map column: %w", err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// APIKeyFilter returns the WHERE clause (empty, or starting with " WHERE")
// and its arguments for q; placeholder(i) spells the i-th (1-based)
// parameter.
func APIKeyFilter(q exchange.APIKeyQuery, placeholder func(i int) string) (string, []any, error) {
	var conds []string
	var args []any
	add := func(cond string, arg any) {
		args = append(args, arg)
		conds = append(conds, fmt.Sprintf(cond, placeholder(len(args))))
	}
	if q.Subject != "" {
		add("subject = %s", q.Subject)
	}
	if q.Policy != "" {
		add("policy = %s", q.Policy)
	}
	if !q.Now.IsZero() {
		n, err := Nanos(q.Now)
		if err != nil {
			return "", nil, err
		}
		add("expires_at > %s", n)
		conds = append(conds, "revoked_at IS NULL")
	}
	if len(conds) == 0 {
		return "", nil, nil
	}
	where := " WHERE " + conds[0]
	for _, c := range conds[1:] {
		where += " AND " + c
	}
	return where, args, nil
}

// CheckRevokedToken refuses an empty jti.
func CheckRevokedToken(jti string) error {
	if jti == "" {
		return errors.New("revoked token without jti")
	}
	return nil
}
