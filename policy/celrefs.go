package policy

import (
	"fmt"
	"slices"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
)

// celClaimsVar is the one variable a condition sees.
const celClaimsVar = "claims"

// claimRef is a claim a condition names with a constant: claims.name,
// claims["name"], has(claims.name) or "name" in claims. Line and Column
// (1-based) locate it in the condition's source.
type claimRef struct {
	name   string
	line   int
	column int
}

func (r claimRef) String() string {
	return fmt.Sprintf("claims.%s at %d:%d", r.name, r.line, r.column)
}

// unknownConditionClaims returns a load error for each claim a condition
// names that its issuer does not emit, when the issuer's claims are known:
// the typo guard of claim matchers, applied to conditions.
func unknownConditionClaims(r *compiledRule, cond *condition, errorf func(key, format string, args ...any) *Error) []error {
	if r.info == nil || r.info.KnownClaims == nil {
		return nil
	}
	var errs []error
	seen := map[string]bool{}
	for _, ref := range cond.claims {
		if seen[ref.name] || slices.Contains(r.info.KnownClaims, ref.name) {
			continue
		}
		seen[ref.name] = true
		errs = append(errs, errorf("condition", "%s: issuer %q has no claim %q (known: %v)", ref, r.issuer, ref.name, r.info.KnownClaims))
	}
	return errs
}

// claimRefs walks a checked condition and returns the claims it names with
// a constant, in source order. A name computed at run time
// (claims[claims.key]) cannot be checked and is not returned; neither is a
// use of a comprehension variable that shadows claims.
func claimRefs(a *cel.Ast) []claimRef {
	native := a.NativeRep()
	w := &refWalker{info: native.SourceInfo()}
	w.walk(native.Expr())
	return w.refs
}

type refWalker struct {
	info *celast.SourceInfo
	refs []claimRef
}

// add records a reference located at e, where its source text starts.
func (w *refWalker) add(e celast.Expr, name string) {
	loc := w.info.GetStartLocation(e.ID())
	w.refs = append(w.refs, claimRef{name: name, line: loc.Line(), column: loc.Column() + 1})
}

func (w *refWalker) walk(e celast.Expr) {
	switch e.Kind() {
	case celast.SelectKind:
		sel := e.AsSelect()
		if isClaimsIdent(sel.Operand()) {
			w.add(sel.Operand(), sel.FieldName()) // claims.name, and has(claims.name) (test-only)
			return
		}
		w.walk(sel.Operand())
	case celast.CallKind:
		w.call(e)
	case celast.ListKind:
		for _, el := range e.AsList().Elements() {
			w.walk(el)
		}
	case celast.MapKind:
		for _, en := range e.AsMap().Entries() {
			if en.Kind() == celast.MapEntryKind {
				w.walk(en.AsMapEntry().Key())
				w.walk(en.AsMapEntry().Value())
			}
		}
	case celast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			if f.Kind() == celast.StructFieldKind {
				w.walk(f.AsStructField().Value())
			}
		}
	case celast.ComprehensionKind:
		w.comprehension(e.AsComprehension())
	}
}

// call records claims["name"] and "name" in claims, and walks arguments.
func (w *refWalker) call(e celast.Expr) {
	c := e.AsCall()
	args := c.Args()
	if len(args) == 2 {
		switch c.FunctionName() {
		case operators.Index, operators.OptIndex, operators.OptSelect:
			if name, ok := constString(args[1]); ok && isClaimsIdent(args[0]) {
				w.add(args[0], name)
				return
			}
		case operators.In:
			if name, ok := constString(args[0]); ok && isClaimsIdent(args[1]) {
				w.add(args[0], name)
				return
			}
		}
	}
	if c.IsMemberFunction() {
		w.walk(c.Target())
	}
	for _, a := range args {
		w.walk(a)
	}
}

// comprehension walks a macro's parts; a loop variable named claims
// shadows the claims variable inside the loop.
func (w *refWalker) comprehension(c celast.ComprehensionExpr) {
	w.walk(c.IterRange())
	w.walk(c.AccuInit())
	vars := []string{c.IterVar(), c.AccuVar()}
	if c.HasIterVar2() {
		vars = append(vars, c.IterVar2())
	}
	if slices.Contains(vars, celClaimsVar) {
		return
	}
	w.walk(c.LoopCondition())
	w.walk(c.LoopStep())
	w.walk(c.Result())
}

func isClaimsIdent(e celast.Expr) bool {
	return e.Kind() == celast.IdentKind && e.AsIdent() == celClaimsVar
}

func constString(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}
