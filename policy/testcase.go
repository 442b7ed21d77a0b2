package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// TestCase is one policy test case: an identity (the verified token's
// claims), a request, and the decision the policy set must give. Test cases
// live next to the policies in files named *_test.yaml (see LoadTests):
//
//	tests:
//	  - name: main branch deploy is allowed
//	    claims: {iss: https://ci.example, sub: "repo:org/app:ref:refs/heads/main", aud: https://broker}
//	    request: {audience: [deploy-api], scope: [deploy:prod], token_type: jwt}
//	    expect: allow deploy-prod
type TestCase struct {
	// Name describes the case.
	Name string
	// File and Line locate the case for messages.
	File string
	Line int
	// Claims are the token's claims, numbers as json.Number, as the verifier
	// hands them over: iss, sub and aud included.
	Claims map[string]any
	// TokenType, Targets and Scopes are the request (see Request).
	TokenType string
	Targets   []string
	Scopes    []string
	// Expect is the decision the set must give.
	Expect Expectation
}

// Expectation is the expected decision of a test case: "allow NAME",
// "deny", or "deny CODE" with CODE one of invalid_request, invalid_target,
// invalid_scope (the RFC 8693 error the broker would answer).
type Expectation struct {
	// Allow is true for "allow NAME".
	Allow bool
	// Policy is the policy that must be selected (Allow only).
	Policy string
	// Code is the error code a deny must carry; empty accepts any deny.
	Code string
}

// RFC 8693 error codes a refusal maps to, as the broker answers them.
const (
	CodeInvalidRequest = "invalid_request"
	CodeInvalidTarget  = "invalid_target"
	CodeInvalidScope   = "invalid_scope"
)

// ParseExpectation parses "allow NAME", "deny" or "deny CODE".
func ParseExpectation(s string) (Expectation, error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 2 && f[0] == "allow":
		return Expectation{Allow: true, Policy: f[1]}, nil
	case len(f) == 1 && f[0] == "deny":
		return Expectation{}, nil
	case len(f) == 2 && f[0] == "deny":
		switch f[1] {
		case CodeInvalidRequest, CodeInvalidTarget, CodeInvalidScope:
			return Expectation{Code: f[1]}, nil
		}
		return Expectation{}, fmt.Errorf("policy: unknown deny code %q (want %s, %s or %s)", f[1], CodeInvalidRequest, CodeInvalidTarget, CodeInvalidScope)
	}
	return Expectation{}, fmt.Errorf("policy: expect %q: want \"allow POLICY\", \"deny\" or \"deny CODE\"", s)
}

// String formats the expectation as it is written.
func (e Expectation) String() string {
	switch {
	case e.Allow:
		return "allow " + e.Policy
	case e.Code != "":
		return "deny " + e.Code
	}
	return "deny"
}

// ErrorCode returns the RFC 8693 error code the broker answers for a refusal
// with this code: invalid_target, invalid_scope or invalid_request.
func (c DenyCode) ErrorCode() string {
	switch c {
	case DenyTarget:
		return CodeInvalidTarget
	case DenyScope:
		return CodeInvalidScope
	}
	return CodeInvalidRequest
}

// IsTestFile reports whether a file name holds policy test cases: it ends
// in _test.yaml, _test.yml, .test.yaml or .test.yml.
func IsTestFile(name string) bool {
	for _, ext := range []string{".yaml", ".yml"} {
		if base, ok := strings.CutSuffix(name, ext); ok {
			return strings.HasSuffix(base, "_test") || strings.HasSuffix(base, ".test")
		}
	}
	return false
}

// LoadTests loads the test cases of one file, or of every test file (see
// IsTestFile) directly in a directory, in file-name order. Every error of
// the load is returned, joined; each is an *Error with file and line.
func LoadTests(path string) ([]*TestCase, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	names := []string{path}
	if st.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		names = names[:0]
		for _, e := range entries {
			if !e.IsDir() && !strings.HasPrefix(e.Name(), ".") && IsTestFile(e.Name()) {
				names = append(names, filepath.Join(path, e.Name()))
			}
		}
	}
	var out []*TestCase
	var errs []error
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: %w", err))
			continue
		}
		tcs, err := ParseTests(name, data)
		if err != nil {
			errs = append(errs, err)
		}
		out = append(out, tcs...)
	}
	return out, errors.Join(errs...)
}

// ParseTests parses one test file. Every error is returned, joined, with the
// cases that parsed.
func ParseTests(filename string, data []byte) ([]*TestCase, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, &Error{File: filename, Err: fmt.Errorf("invalid YAML: %w", err)}
	}
	p := &parser{file: filename}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = deref(root.Content[0])
	}
	var out []*TestCase
	p.mapping(root, "", "", func(key string, v *yaml.Node) {
		if key != "tests" {
			p.errf(v, "", key, "unknown key (want tests)")
			return
		}
		names := map[string]int{}
		for _, n := range p.seq(v, "", key) {
			tc := p.testCase(n)
			if tc == nil {
				continue
			}
			if prev, dup := names[tc.Name]; dup {
				p.errf(n, fmt.Sprintf("test %q", tc.Name), "name", "duplicate test name, first defined at line %d", prev)
				continue
			}
			names[tc.Name] = tc.Line
			out = append(out, tc)
		}
	})
	return out, errors.Join(p.errs...)
}

func (p *parser) testCase(n *yaml.Node) *TestCase {
	tc := &TestCase{File: p.file, Line: n.Line}
	if n.Kind == yaml.MappingNode {
		tc.Name = nameOf(n)
	}
	rule := fmt.Sprintf("test %q", tc.Name)
	before := len(p.errs)
	var token string
	var hasClaims, hasExpect bool
	p.mapping(n, rule, "", func(key string, v *yaml.Node) {
		switch key {
		case "name":
			tc.Name = p.scalar(v, rule, key)
		case "claims":
			hasClaims = true
			claims, errs := decodeYAMLClaims(v)
			for _, e := range errs {
				p.errf(e.node, rule, strings.TrimSuffix(join(key, e.path), "."), "%s", e.msg)
			}
			tc.Claims = claims
		case "token":
			token = p.scalar(v, rule, key)
		case "request":
			p.testRequest(v, rule, tc)
		case "expect":
			hasExpect = true
			e, err := ParseExpectation(p.scalar(v, rule, key))
			if err != nil {
				p.errf(v, rule, key, "%v", strings.TrimPrefix(err.Error(), "policy: "))
			}
			tc.Expect = e
		default:
			p.errf(v, rule, key, "unknown key (want name, claims, token, request, expect)")
		}
	})
	switch {
	case tc.Name == "":
		p.errf(n, rule, "name", "required")
	case hasClaims == (token != ""):
		p.errf(n, rule, "claims", "set exactly one of claims and token")
	case !hasExpect:
		p.errf(n, rule, "expect", "required: allow POLICY, deny or deny CODE")
	}
	if token != "" {
		claims, err := TokenClaims(token)
		if err != nil {
			p.errf(n, rule, "token", "%v", strings.TrimPrefix(err.Error(), "policy: "))
		}
		tc.Claims = claims
	}
	if len(p.errs) > before {
		return nil
	}
	return tc
}

func (p *parser) testRequest(n *yaml.Node, rule string, tc *TestCase) {
	p.mapping(n, rule, "request", func(key string, v *yaml.Node) {
		path := "request." + key
		switch key {
		case "audience":
			tc.Targets = p.words(v, rule, path, false)
		case "scope":
			tc.Scopes = p.words(v, rule, path, true)
		case "token_type":
			tc.TokenType = p.scalar(v, rule, path)
			if tc.TokenType != GrantJWT && tc.TokenType != GrantAPIKey {
				p.errf(v, rule, path, "must be %s or %s", GrantJWT, GrantAPIKey)
			}
		default:
			p.errf(v, rule, path, "unknown key (want audience, scope, token_type)")
		}
	})
}

// words reads a list, or a single value; split cuts it on spaces, as the
// scope parameter of a token request is.
func (p *parser) words(n *yaml.Node, rule, key string, split bool) []string {
	if n.Kind == yaml.ScalarNode {
		v := p.scalar(n, rule, key)
		if split {
			return strings.Fields(v)
		}
		return []string{v}
	}
	return p.list(n, rule, key)
}

// RequestFromClaims builds the Request a verified token with these claims
// makes: iss, sub and aud (a string or a list) are taken from the claims.
func RequestFromClaims(claims map[string]any) (Request, error) {
	req := Request{Claims: claims}
	var ok bool
	if req.Issuer, ok = claims["iss"].(string); !ok || req.Issuer == "" {
		return req, errors.New("policy: claims need iss (a string)")
	}
	if req.Subject, ok = claims["sub"].(string); !ok || req.Subject == "" {
		return req, errors.New("policy: claims need sub (a string)")
	}
	switch aud := claims["aud"].(type) {
	case string:
		req.Audience = []string{aud}
	case []any:
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return req, errors.New("policy: claims: aud must be a string or a list of strings")
			}
			req.Audience = append(req.Audience, s)
		}
	default:
		return req, errors.New("policy: claims need aud (a string or a list of strings)")
	}
	return req, nil
}

// Request returns the request the test case makes.
func (tc *TestCase) Request() (Request, error) {
	req, err := RequestFromClaims(tc.Claims)
	req.TokenType, req.Targets, req.Scopes = tc.TokenType, tc.Targets, tc.Scopes
	return req, err
}

// Result is the outcome of one test case.
type Result struct {
	// Case is the test case run.
	Case *TestCase
	// Pass reports that the set gave the expected decision.
	Pass bool
	// Got is the decision, written as an Expectation ("allow NAME" or
	// "deny CODE"); empty when the case could not run.
	Got string
	// Details explain a failure: the deny reason, the candidates of an
	// allow, and why the expected policy does not match.
	Details []string
	// Err is set when the case could not run (e.g. claims without iss).
	Err error
}

// ReasonNoJTI is why the broker refuses a token without a jti (a non-empty
// string) that a single-use policy allowed: there is nothing to burn.
const ReasonNoJTI = "subject_token has no jti, required by a single-use policy"

// hasJTI reports whether the claims carry a jti the broker can burn: a
// non-empty string.
func hasJTI(claims map[string]any) bool {
	jti, ok := claims["jti"].(string)
	return ok && jti != ""
}

// RunTest evaluates a test case against the set and compares the decision
// with the expectation. Like the broker, it refuses a token whose jti is
// not a string, and a decision of a single_use policy for a token without
// a jti (deny invalid_request).
func (s *Set) RunTest(tc *TestCase) Result {
	r := Result{Case: tc}
	req, err := tc.Request()
	if err != nil {
		r.Err = err
		return r
	}
	if jti, present := req.Claims["jti"]; present {
		if _, ok := jti.(string); !ok {
			// The verifier refuses such a token before any policy runs.
			r.Got = "deny " + CodeInvalidRequest
			r.Pass = !tc.Expect.Allow && (tc.Expect.Code == "" || tc.Expect.Code == CodeInvalidRequest)
			if !r.Pass {
				r.Details = append(r.Details, "reason: subject_token is invalid: jti is not a string")
			}
			return r
		}
	}
	d, err := s.Evaluate(req)
	var deny *DenyError
	switch {
	case err == nil && d.SingleUse && !hasJTI(req.Claims):
		// The broker refuses here too (exchange: claimOnce), after the
		// policies allowed: a single-use exchange burns the token's jti.
		r.Got = "deny " + CodeInvalidRequest
		r.Pass = !tc.Expect.Allow && (tc.Expect.Code == "" || tc.Expect.Code == CodeInvalidRequest)
		if !r.Pass {
			r.Details = append(r.Details, fmt.Sprintf("reason: %s: policy %q is single_use (the default); add a jti to the claims, or set single_use: false if the issuer's tokens carry none", ReasonNoJTI, d.Policy))
		}
	case err == nil:
		r.Got = "allow " + d.Policy
		r.Pass = tc.Expect.Allow && tc.Expect.Policy == d.Policy
		if !r.Pass {
			r.Details = append(r.Details, fmt.Sprintf("allowed by policy %q (candidates in selection order: %s)", d.Policy, strings.Join(d.Candidates, ", ")))
		}
	case errors.As(err, &deny):
		code := deny.Code.ErrorCode()
		r.Got = "deny " + code
		r.Pass = !tc.Expect.Allow && (tc.Expect.Code == "" || tc.Expect.Code == code)
		if !r.Pass {
			r.Details = append(r.Details, "reason: "+deny.Reason)
		}
	default:
		r.Err = err
		return r
	}
	if !r.Pass && tc.Expect.Allow && (d == nil || tc.Expect.Policy != d.Policy) {
		r.Details = append(r.Details, s.whyNot(tc.Expect.Policy, req))
	}
	return r
}

// whyNot explains why the named policy was not selected.
func (s *Set) whyNot(name string, req Request) string {
	for _, e := range s.Explain(req) {
		if e.Kind != "policy" || e.Name != name {
			continue
		}
		if e.Matched {
			return fmt.Sprintf("policy %q matches too, but another policy is selected first (more specific, then by name)", name)
		}
		return fmt.Sprintf("policy %q (%s) fails at %s: expected %s, got %s", name, location(e.File, e.Line), e.Check, e.Expected, e.Actual)
	}
	var names []string
	for _, p := range s.policies {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	return fmt.Sprintf("no policy is named %q (policies: %s)", name, strings.Join(names, ", "))
}
