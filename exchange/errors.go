package exchange

import (
	"errors"
	"fmt"
	"time"
)

// RFC 6749 §5.2 and RFC 8693 §2.2.2 error codes, plus the codes of RFC 6749
// §4.1.2.1 this broker uses for overload and outages.
const (
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidTarget          = "invalid_target"
	CodeInvalidScope           = "invalid_scope"
	CodeUnsupportedGrantType   = "unsupported_grant_type"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
	CodeServerError            = "server_error"
	CodeRateLimited            = "rate_limited"
)

// Error is a refusal of the exchange. Code and Description are what the
// client sees (RFC 6749 §5.2); Err is the full reason, kept for the audit
// trail and logs only. The HTTP edge maps Code to a status.
type Error struct {
	Code        string
	Description string
	// Err is the internal reason; never sent to the client.
	Err error
	// RetryAfter, when positive, is sent as Retry-After.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("exchange: %s: %s: %v", e.Code, e.Description, e.Err)
	}
	return fmt.Sprintf("exchange: %s: %s", e.Code, e.Description)
}

func (e *Error) Unwrap() error { return e.Err }

// Reason is the full reason for the audit trail.
func (e *Error) Reason() string {
	if e.Err != nil {
		return e.Description + ": " + e.Err.Error()
	}
	return e.Description
}

func newError(code, desc string, err error) *Error {
	return &Error{Code: code, Description: desc, Err: err}
}

// AsError returns err as an *Error, turning anything else into a
// server_error that hides the detail from the client.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return newError(CodeServerError, "internal error", err)
}
