package exchange

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// revoke answers POST /revoke (RFC 7009): 200 with an empty body whether or
// not the token was known (§2.2), 400 for a malformed request, 503 when the
// store failed. A revocation of a credential of this broker, and a store
// failure, are audited as "credential.revoke"; a token the broker did not
// mint is only counted (tokenbroker_revocations_total{result="unknown"}):
// anyone may call /revoke, and junk must not fill the audit trail.
func (a *credentialAPI) revoke(c echo.Context) error {
	noStore(c)
	s := a.server
	start := s.cfg.Now()
	ev := AuditEvent{Time: start, RequestID: reqID(c), ClientIP: c.RealIP(), Action: "credential.revoke"}
	tok, e := readTokenForm(c)
	if e != nil {
		a.revocations.WithLabelValues("invalid_request").Inc()
		return writeError(c, e)
	}
	rv, err := a.revoker.Revoke(c.Request().Context(), tok)
	ev.TokenType, ev.CredentialID = rv.Kind, rv.ID
	if err != nil {
		a.revocations.WithLabelValues("error").Inc()
		e := unavailable(err)
		ev.Outcome, ev.ErrorCode, ev.Reason = OutcomeError, e.Code, e.Reason()
		a.audit(ev)
		return writeError(c, e)
	}
	if rv.Kind == "" {
		a.revocations.WithLabelValues("unknown").Inc()
		return c.NoContent(http.StatusOK)
	}
	a.revocations.WithLabelValues("revoked").Inc()
	ev.Outcome = OutcomeAllowed
	a.audit(ev)
	return c.NoContent(http.StatusOK)
}

// introspect answers POST /introspect (RFC 7662).
func (a *credentialAPI) introspect(c echo.Context) error {
	noStore(c)
	tok, e := readTokenForm(c)
	if e != nil {
		return writeError(c, e)
	}
	in, err := a.revoker.Introspect(c.Request().Context(), tok)
	if err != nil {
		return writeError(c, unavailable(err))
	}
	return c.JSON(http.StatusOK, in)
}

func (a *credentialAPI) audit(ev AuditEvent) {
	if a.server.cfg.Audit != nil {
		a.server.cfg.Audit.Record(ev)
	}
}
