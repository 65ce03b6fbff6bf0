package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode/utf8"
)

// Message kinds: the kinds of envelope the network carries.
const (
	MsgReferral         = "referral"
	MsgStatementRequest = "statement-request"
	MsgStatement        = "statement"
	MsgStatus           = "status"
	MsgReceipt          = "receipt"
	// MsgCheckpoint and MsgCosignature: audit log checkpoints sent to the
	// other gateways to witness, and their cosignatures.
	MsgCheckpoint  = "checkpoint"
	MsgCosignature = "cosignature"
)

// MessageKinds lists every message kind.
var MessageKinds = []string{MsgReferral, MsgStatementRequest, MsgStatement, MsgStatus, MsgReceipt, MsgCheckpoint, MsgCosignature}

// Conditions a rule may require, beyond the kinds of the two agencies.
const (
	// CondOpenRequest: the message answers an open, unexpired statement
	// request that the recipient sent to the sender.
	CondOpenRequest = "open-request"
	// CondCounterpart: the message concerns an existing referral or
	// statement request between the two agencies.
	CondCounterpart = "counterpart"
)

// requiredConds are the conditions a kind always needs, whatever the rules
// say: ParseRules refuses rules that leave them out, and Allow checks them
// even if a Rules value was built by hand.
var requiredConds = map[string][]string{
	MsgStatement: {CondOpenRequest},
	MsgStatus:    {CondCounterpart},
	MsgReceipt:   {CondCounterpart},
}

// MaxRulesSize caps the rules section of a directory.
const MaxRulesSize = 64 << 10

// AnyKind in a rule's from or to list matches every agency kind.
const AnyKind = "*"

// Rule allows one message kind from agencies of the listed kinds to
// agencies of the listed kinds, when every listed condition holds.
type Rule struct {
	Kind     string   `json:"kind"`
	From     []string `json:"from"`
	To       []string `json:"to"`
	Requires []string `json:"requires,omitempty"`
}

// Rules are the network rules of the signed directory (its "rules" field).
// Anything not allowed by a rule is denied.
type Rules struct {
	Version int `json:"version"`
	// Allowed are the rules; the JSON name is "allow".
	Allowed []Rule `json:"allow"`
	// Pseudonym is the RE2 pattern every person's pseudonym must match
	// (CheckPseudonym): anchored (^...$) and at most MaxPseudonymPattern
	// bytes. Empty means DefaultPseudonymPattern.
	Pseudonym string `json:"pseudonym,omitempty"`

	// pseudonymRE is Pseudonym compiled by ParseRules, Validate or
	// DefaultRules; CheckPseudonym compiles it when it is missing or stale
	// (a Rules built or changed by hand).
	pseudonymRE *regexp.Regexp
}

// Pseudonym limits.
const (
	// DefaultPseudonymPattern is the pseudonym form when the rules set
	// none: one to four capital letters, a four-digit year and a three- to
	// six-digit number, such as V-2026-0042 or IOM-2026-000123. It matches
	// no ordinary name (Siti-Aminah-1990, Budi2, aminah.siti.1).
	DefaultPseudonymPattern = `^[A-Z]{1,4}-[0-9]{4}-[0-9]{3,6}$`
	// MaxPseudonymPattern caps the length of Rules.Pseudonym, in bytes.
	MaxPseudonymPattern = 256
	// MaxPseudonym caps a pseudonym, in bytes, whatever the pattern.
	MaxPseudonym = 128
)

var defaultPseudonymRE = regexp.MustCompile(DefaultPseudonymPattern)

// RulesVersion is the rules format version.
const RulesVersion = 1

var allKinds = []string{KindIOM, KindDinsos, KindPolice, KindShelter}

// DefaultRules returns the rules written into a new directory, with
// DefaultPseudonymPattern as the pseudonym pattern:
//
//   - referral: iom, dinsos, police and shelter to any of them;
//   - statement-request: police to iom, dinsos or shelter;
//   - statement: iom, dinsos or shelter to police, only answering an open
//     request from that police agency;
//   - status and receipt: between any kinds, only to the counterpart of an
//     existing referral or request;
//   - checkpoint and cosignature (the gateways witnessing each other's
//     audit logs): between any kinds.
func DefaultRules() *Rules {
	holders := []string{KindIOM, KindDinsos, KindShelter}
	return &Rules{
		Version: RulesVersion,
		Allowed: []Rule{
			{Kind: MsgReferral, From: slices.Clone(allKinds), To: slices.Clone(allKinds)},
			{Kind: MsgStatementRequest, From: []string{KindPolice}, To: slices.Clone(holders)},
			{Kind: MsgStatement, From: slices.Clone(holders), To: []string{KindPolice}, Requires: []string{CondOpenRequest}},
			{Kind: MsgStatus, From: []string{AnyKind}, To: []string{AnyKind}, Requires: []string{CondCounterpart}},
			{Kind: MsgReceipt, From: []string{AnyKind}, To: []string{AnyKind}, Requires: []string{CondCounterpart}},
			{Kind: MsgCheckpoint, From: []string{AnyKind}, To: []string{AnyKind}},
			{Kind: MsgCosignature, From: []string{AnyKind}, To: []string{AnyKind}},
		},
		Pseudonym:   DefaultPseudonymPattern,
		pseudonymRE: defaultPseudonymRE,
	}
}

// DefaultRulesJSON returns DefaultRules as JSON for a directory's rules
// field.
func DefaultRulesJSON() json.RawMessage {
	b, err := json.MarshalIndent(DefaultRules(), "", "  ")
	if err != nil {
		panic("policy: cannot encode default rules: " + err.Error())
	}
	return b
}

var kindRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ParseRules parses and checks the rules section of a directory strictly:
// no unknown fields, no trailing data, a known version, known message kinds
// and conditions, agency kinds that are slugs or "*", every kind's
// required conditions present, and a pseudonym pattern, if any, that
// compiles, is anchored and is at most MaxPseudonymPattern bytes. Empty input is an error: a directory without
// rules would deny everything, which is never what its author meant. Errors
// wrap ErrRulesMalformed.
func ParseRules(b json.RawMessage) (*Rules, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("%w: the directory has no rules", ErrRulesMalformed)
	}
	if len(b) > MaxRulesSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrRulesMalformed, MaxRulesSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Rules
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRulesMalformed, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: trailing data after JSON value", ErrRulesMalformed)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// Validate checks r as ParseRules does, and keeps the compiled pseudonym
// pattern.
func (r *Rules) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrRulesMalformed, fmt.Sprintf(format, args...))
	}
	re, err := compilePseudonym(r.Pseudonym)
	if err != nil {
		return bad("pseudonym: %v", err)
	}
	r.pseudonymRE = re
	if r.Version != RulesVersion {
		return bad("version %d is not %d", r.Version, RulesVersion)
	}
	if len(r.Allowed) == 0 {
		return bad("allow is empty")
	}
	for i, rule := range r.Allowed {
		if !slices.Contains(MessageKinds, rule.Kind) {
			return bad("allow[%d]: unknown message kind %q", i, rule.Kind)
		}
		for _, side := range []struct {
			name  string
			kinds []string
		}{{"from", rule.From}, {"to", rule.To}} {
			if len(side.kinds) == 0 {
				return bad("allow[%d] (%s): %s is empty", i, rule.Kind, side.name)
			}
			for _, k := range side.kinds {
				if k != AnyKind && !kindRE.MatchString(k) {
					return bad("allow[%d] (%s): %s kind %q is not a lowercase slug or *", i, rule.Kind, side.name, k)
				}
			}
		}
		for _, c := range rule.Requires {
			if c != CondOpenRequest && c != CondCounterpart {
				return bad("allow[%d] (%s): unknown condition %q", i, rule.Kind, c)
			}
		}
		for _, c := range requiredConds[rule.Kind] {
			if !slices.Contains(rule.Requires, c) {
				return bad("allow[%d]: %s messages must require %q", i, rule.Kind, c)
			}
		}
	}
	return nil
}

// Facts are what the gateway knows about a message beyond the kinds of its
// two agencies.
type Facts struct {
	// FromAgency and ToAgency are the agency ids. When both are set they
	// must differ.
	FromAgency string
	ToAgency   string
	// OpenRequest: the message answers an open, unexpired statement request
	// that the recipient agency sent to the sender agency (see
	// RequestOpen).
	OpenRequest bool
	// Counterpart: the message concerns an existing referral or statement
	// request between the two agencies.
	Counterpart bool
}

func (f Facts) holds(cond string) bool {
	switch cond {
	case CondOpenRequest:
		return f.OpenRequest
	case CondCounterpart:
		return f.Counterpart
	}
	return false
}

// Allow says whether a message of kind msgKind may go from an agency of
// kind fromKind to one of kind toKind. The sending gateway asks before it
// seals, the receiving gateway again for every incoming envelope. It
// returns nil or an *Error of class ErrDenied: ReasonRuleNotAllowed when no
// rule lists the kinds, ReasonRuleOpenRequest or ReasonRuleCounterpart when
// a listed rule's condition does not hold, ReasonRuleSelfAddressed for a
// message to its own sender.
func (r *Rules) Allow(msgKind, fromKind, toKind string, facts Facts) error {
	if r == nil {
		return deny(ReasonRuleNotAllowed, "no network rules")
	}
	if facts.FromAgency != "" && facts.FromAgency == facts.ToAgency {
		return deny(ReasonRuleSelfAddressed, "an agency cannot send to itself")
	}
	if fromKind == "" || toKind == "" || fromKind == AnyKind || toKind == AnyKind {
		return deny(ReasonRuleNotAllowed, "agency kind missing")
	}
	var unmet error
	for _, rule := range r.Allowed {
		if rule.Kind != msgKind || !matchKind(rule.From, fromKind) || !matchKind(rule.To, toKind) {
			continue
		}
		conds := append(slices.Clone(requiredConds[msgKind]), rule.Requires...)
		err := checkConds(conds, facts)
		if err == nil {
			return nil
		}
		if unmet == nil {
			unmet = err
		}
	}
	if unmet != nil {
		return unmet
	}
	return deny(ReasonRuleNotAllowed, fmt.Sprintf("no rule allows %s from %s to %s", clip(msgKind), clip(fromKind), clip(toKind)))
}

func checkConds(conds []string, f Facts) error {
	for _, c := range conds {
		if f.holds(c) {
			continue
		}
		switch c {
		case CondOpenRequest:
			return deny(ReasonRuleOpenRequest, "a statement must answer an open request from the recipient")
		case CondCounterpart:
			return deny(ReasonRuleCounterpart, "the recipient is not the counterpart of an existing referral or request")
		default:
			return deny(ReasonRuleNotAllowed, "unknown condition "+c)
		}
	}
	return nil
}

func matchKind(list []string, kind string) bool {
	return slices.Contains(list, AnyKind) || slices.Contains(list, kind)
}

// compilePseudonym compiles a pseudonym pattern ("" is the default). A
// pattern must be at most MaxPseudonymPattern bytes, compile as RE2, and be
// anchored as a whole: it starts with ^ and ends with $, and they bound the
// entire expression (^a$|b is refused: its b is not anchored; write
// ^(?:a|b)$).
func compilePseudonym(p string) (*regexp.Regexp, error) {
	if p == "" || p == DefaultPseudonymPattern {
		return defaultPseudonymRE, nil
	}
	if len(p) > MaxPseudonymPattern {
		return nil, fmt.Errorf("pattern is longer than %d bytes", MaxPseudonymPattern)
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("pattern does not compile: %v", err)
	}
	if !anchored(p) {
		return nil, fmt.Errorf("pattern %q is not anchored: it must start with ^ and end with $", p)
	}
	return re, nil
}

// anchored reports whether pattern p matches only whole strings: it is a
// concatenation that begins with ^ and ends with $ (beginning and end of
// text, as regexp.Compile parses them).
func anchored(p string) bool {
	if !strings.HasPrefix(p, "^") || !strings.HasSuffix(p, "$") {
		return false
	}
	re, err := syntax.Parse(p, syntax.Perl)
	if err != nil || re.Op != syntax.OpConcat || len(re.Sub) < 2 {
		return false
	}
	return re.Sub[0].Op == syntax.OpBeginText && re.Sub[len(re.Sub)-1].Op == syntax.OpEndText
}

// CheckPseudonym checks that s, the pseudonym of a person, has the form the
// network rules set (Pseudonym, or DefaultPseudonymPattern when it is empty
// or r is nil): at most MaxPseudonym bytes of UTF-8 matching the pattern.
// It returns nil or an *Error with ReasonPseudonymInvalid (class
// ErrInvalidInput), whose detail never repeats s: a value that is not a
// pseudonym may be the person's real name. Rules whose pattern is unusable
// (built by hand without Validate) refuse every pseudonym.
func (r *Rules) CheckPseudonym(s string) error {
	re := defaultPseudonymRE
	if r != nil {
		want := r.Pseudonym
		if want == "" {
			want = DefaultPseudonymPattern
		}
		if re = r.pseudonymRE; re == nil || re.String() != want {
			var err error
			if re, err = compilePseudonym(r.Pseudonym); err != nil {
				return deny(ReasonPseudonymInvalid, "the network rules' pseudonym pattern is unusable: "+err.Error())
			}
		}
	}
	switch {
	case s == "":
		return deny(ReasonPseudonymInvalid, "pseudonym is missing")
	case len(s) > MaxPseudonym || !utf8.ValidString(s) || !re.MatchString(s):
		return deny(ReasonPseudonymInvalid, "pseudonym is not of the form the network rules set ("+re.String()+"); use the case code, never a name")
	}
	return nil
}
