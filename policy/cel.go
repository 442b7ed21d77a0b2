package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
)

// CEL limits. A condition is admin-written but runs on attacker-chosen
// claims, so its cost is bounded per evaluation.
const (
	// celCostLimit bounds the runtime cost of one condition evaluation.
	celCostLimit = 100_000
	// celInterruptFrequency is how many comprehension iterations run between
	// checks of the evaluation deadline.
	celInterruptFrequency = 100
	// celTimeout bounds the wall time of one condition evaluation.
	celTimeout = 100 * time.Millisecond
)

// condition is a compiled, type-checked CEL program.
type condition struct {
	src string
	prg cel.Program
	// claims are the claims the condition names with a constant, for the
	// typo check against the issuer's known claims.
	claims []claimRef
}

// newCELEnv declares the one variable a condition sees: claims, a
// map(string, dyn) of the verified token's claims.
func newCELEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(cel.Variable(celClaimsVar, cel.MapType(cel.StringType, cel.DynType)))
	if err != nil {
		return nil, fmt.Errorf("policy: cel environment: %w", err)
	}
	return env, nil
}

// compileCondition parses and type-checks src; it must be of type bool.
func compileCondition(env *cel.Env, src string) (*condition, error) {
	ast, iss := env.Compile(src)
	if iss.Err() != nil {
		// One line per error (no source snippet), so that each load error
		// stays one line: "invalid CEL at 1:17: found no matching overload...".
		msgs := make([]string, 0, len(iss.Errors()))
		for _, e := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("at %d:%d: %s", e.Location.Line(), e.Location.Column()+1, e.Message))
		}
		return nil, fmt.Errorf("invalid CEL %s", strings.Join(msgs, "; "))
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("must be a bool expression, not %s (compare explicitly, e.g. claims.x == true)", ast.OutputType())
	}
	prg, err := env.Program(ast,
		cel.CostLimit(celCostLimit),
		cel.InterruptCheckFrequency(celInterruptFrequency),
	)
	if err != nil {
		return nil, fmt.Errorf("invalid CEL program: %w", err)
	}
	return &condition{src: src, prg: prg, claims: claimRefs(ast)}, nil
}

// eval runs the condition. An evaluation error (absent claim, cost limit,
// timeout, wrong type) is returned: for a policy the caller records it as
// "not matched", for a guardrail it denies (fails closed).
func (c *condition) eval(act map[string]any) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), celTimeout)
	defer cancel()
	out, _, err := c.prg.ContextEval(ctx, act)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("result is %T, not bool", out.Value())
	}
	return b, nil
}

// celClaims converts claims for CEL: json.Number becomes int64 when it is
// an integer and float64 otherwise, recursively through lists and maps.
func celClaims(claims map[string]any) map[string]any {
	out := make(map[string]any, len(claims))
	for k, v := range claims {
		out[k] = celValue(v)
	}
	return out
}

func celValue(v any) any {
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		if f, err := v.Float64(); err == nil {
			return f
		}
		return v.String()
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = celValue(e)
		}
		return out
	case map[string]any:
		return celClaims(v)
	}
	return v
}
