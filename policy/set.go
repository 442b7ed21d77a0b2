package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// Set is a compiled, linted and indexed set of policies and guardrails. It
// is immutable once built and safe for concurrent use.
type Set struct {
	policies   []*Policy
	guardrails []*Guardrail
	warnings   []Warning
	pindex     *ruleIndex
	gindex     *ruleIndex
}

// LoadPath loads one .yaml/.yml file, or every .yaml/.yml file directly in a
// directory (not recursing; files ending _test.yaml or .test.yaml, and
// hidden files, are skipped: they hold policy test cases or editor state).
// Every error of the load is returned, joined.
func LoadPath(path string, opts LoadOptions) (*Set, error) {
	names, err := policyFiles(path)
	if err != nil {
		return nil, err
	}
	var files []*File
	var errs []error
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy: %w", err))
			continue
		}
		f, err := Parse(name, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		files = append(files, f)
	}
	set, err := NewSet(files, opts)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return set, nil
}

func policyFiles(path string) ([]string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if !st.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path) // sorted by name: a deterministic order
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || !isPolicyFile(n) {
			continue
		}
		names = append(names, filepath.Join(path, n))
	}
	return names, nil
}

func isPolicyFile(name string) bool {
	for _, ext := range []string{".yaml", ".yml"} {
		if base, ok := strings.CutSuffix(name, ext); ok {
			return !strings.HasSuffix(base, "_test") && !strings.HasSuffix(base, ".test")
		}
	}
	return false
}

// NewSet compiles, lints and indexes the files' policies and guardrails,
// after the guardrails of opts.Issuers (which come first in the set).
// Policy names, and guardrail names, must be unique across the set. Every error is returned,
// joined; each is an *Error naming file, line, policy and key.
func NewSet(files []*File, opts LoadOptions) (*Set, error) {
	c, err := newCompiler(opts)
	if err != nil {
		return nil, err
	}
	s := &Set{pindex: newRuleIndex(), gindex: newRuleIndex()}
	igs, errs := c.issuerGuardrails(opts.Issuers)
	gseen := map[string]*Guardrail{}
	for _, g := range igs {
		gseen[g.Name] = g
		s.gindex.add(g.compiled.issuer, g.compiled.subject, len(s.guardrails))
		s.guardrails = append(s.guardrails, g)
	}
	for _, f := range files {
		for _, g := range f.Guardrails {
			if prev, dup := gseen[g.Name]; dup && g.Name != "" {
				errs = append(errs, g.errorf("name", "duplicate guardrail name, first defined by %s", location(prev.File, prev.Line)))
				continue
			}
			gseen[g.Name] = g
			if err := c.guardrail(g); err != nil {
				errs = append(errs, err)
				continue
			}
			s.gindex.add(g.compiled.issuer, g.compiled.subject, len(s.guardrails))
			s.guardrails = append(s.guardrails, g)
		}
	}
	seen := map[string]*Policy{}
	for _, f := range files {
		for _, p := range f.Policies {
			if prev, dup := seen[p.Name]; dup && p.Name != "" {
				errs = append(errs, p.errorf("name", "duplicate policy name, first defined at %s", location(prev.File, prev.Line)))
				continue
			}
			seen[p.Name] = p
			if err := c.policy(p); err != nil {
				errs = append(errs, err)
				continue
			}
			lerrs, warns := lint(p, s.guardrails)
			s.warnings = append(s.warnings, warns...)
			if len(lerrs) > 0 {
				p.compiled = nil
				errs = append(errs, lerrs...)
				continue
			}
			s.pindex.add(p.compiled.issuer, p.compiled.subject, len(s.policies))
			s.policies = append(s.policies, p)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Policies returns the set's policies in load order (files by name, then
// file order). The policies are compiled; callers must not modify them.
func (s *Set) Policies() []*Policy { return append([]*Policy(nil), s.policies...) }

// Guardrails returns the set's guardrails in load order.
func (s *Set) Guardrails() []*Guardrail { return append([]*Guardrail(nil), s.guardrails...) }

// Len returns the number of policies.
func (s *Set) Len() int { return len(s.policies) }

// Warnings returns the load's warnings: risky shapes that lint lets through,
// and every lifted refusal.
func (s *Set) Warnings() []Warning { return append([]Warning(nil), s.warnings...) }

// Holder holds the current Set for hot reload: readers Load or Evaluate
// while a reloader Stores a new Set. The zero value holds no Set.
type Holder struct {
	p atomic.Pointer[Set]
}

// NewHolder returns a Holder holding s.
func NewHolder(s *Set) *Holder {
	h := &Holder{}
	h.p.Store(s)
	return h
}

// Load returns the current Set, or nil.
func (h *Holder) Load() *Set { return h.p.Load() }

// Store replaces the current Set.
func (h *Holder) Store(s *Set) { h.p.Store(s) }

// ErrNoSet is returned by Holder.Evaluate when no Set has been stored.
var ErrNoSet = errors.New("policy: no policy set loaded")

// Evaluate evaluates req against the current Set.
func (h *Holder) Evaluate(req Request) (*Decision, error) {
	s := h.p.Load()
	if s == nil {
		return nil, ErrNoSet
	}
	return s.Evaluate(req)
}
