package policy

import (
	"slices"
	"sort"
)

// ruleIndex finds the rules that may match a token without trying every
// rule: rules are bucketed by issuer, then by exact subject, by the literal
// prefix of their subject pattern, or as subject-less. A lookup costs a map
// access per distinct prefix length of the issuer's patterns, whatever the
// number of rules. Rules are named by their position in the Set.
//
// Subject-less rules and "re:" patterns (indexed under the empty prefix) are
// tried on every lookup for their issuer.
type ruleIndex struct {
	byIssuer map[string]*subjectIndex
}

type subjectIndex struct {
	exact    map[string][]int
	prefixed map[string][]int
	lengths  []int // distinct prefix lengths, ascending
	any      []int
}

func newRuleIndex() *ruleIndex { return &ruleIndex{byIssuer: map[string]*subjectIndex{}} }

// add indexes rule i; issuer "" means every issuer.
func (ix *ruleIndex) add(issuer string, subject *matcher, i int) {
	si := ix.byIssuer[issuer]
	if si == nil {
		si = &subjectIndex{exact: map[string][]int{}, prefixed: map[string][]int{}}
		ix.byIssuer[issuer] = si
	}
	switch {
	case subject == nil:
		si.any = append(si.any, i)
	case subject.kind == matchExact:
		si.exact[subject.raw] = append(si.exact[subject.raw], i)
	default:
		p := subject.prefix
		if _, ok := si.prefixed[p]; !ok {
			n := sort.SearchInts(si.lengths, len(p))
			if n == len(si.lengths) || si.lengths[n] != len(p) {
				si.lengths = slices.Insert(si.lengths, n, len(p))
			}
		}
		si.prefixed[p] = append(si.prefixed[p], i)
	}
}

// lookup appends to out every rule that may match (issuer, subject), in
// ascending position order.
func (ix *ruleIndex) lookup(issuer, subject string, out []int) []int {
	start := len(out)
	out = ix.byIssuer[issuer].lookup(subject, out)
	if issuer != "" {
		out = ix.byIssuer[""].lookup(subject, out)
	}
	slices.Sort(out[start:])
	return out
}

func (si *subjectIndex) lookup(subject string, out []int) []int {
	if si == nil {
		return out
	}
	out = append(out, si.any...)
	out = append(out, si.exact[subject]...)
	for _, n := range si.lengths {
		if n > len(subject) {
			break
		}
		out = append(out, si.prefixed[subject[:n]]...)
	}
	return out
}

// has reports whether any rule is indexed for the issuer.
func (ix *ruleIndex) has(issuer string) bool { return ix.byIssuer[issuer] != nil }
