package body

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"

	"github.com/rujukan/rujukan/agency-gateway/openapi"
	"github.com/rujukan/rujukan/policy"
)

// form is one kind of body: its schema, size limit and Go rules.
type form struct {
	name   string // component schema name
	limit  int
	schema *jsonschema.Schema
	rules  func(c *checker, v any)
}

var (
	referralInput = newForm("ReferralInput", MaxReferralBytes, func(c *checker, v any) {
		referralRules(c, v.(*Referral))
	})
	referralReceived = newForm("Referral", MaxReferralBytes, func(c *checker, v any) {
		referralRules(c, v.(*Referral))
	})
	statusChange          = newForm("StatusChange", MaxStatusChangeBytes, nil)
	statementRequestInput = newForm("StatementRequestInput", MaxStatementRequestBytes, nil)
	statementRequest      = newForm("StatementRequest", MaxStatementRequestBytes, nil)
	consentDecision       = newForm("ConsentDecision", MaxConsentBytes, func(c *checker, v any) {
		d := v.(*ConsentDecision)
		c.maxBytes("/notes", d.Notes, MaxNotesBytes)
		if d.Person != nil {
			c.ageRange("/person/age_range", d.Person.AgeRange)
		}
	})
	response = newForm("StatementResponse", MaxResponseBytes, func(c *checker, v any) {
		r := v.(*Response)
		if s := r.Statement; s != nil {
			c.maxBytes("/statement/text", s.Text, MaxStatementTextBytes)
		}
		if r.Decline != nil && len(r.Attachments) > 0 {
			c.add("/attachments", CodeConflict, "files are sent with a statement, not with a decline")
		}
	})
	statusBody    = newForm("StatusEnvelope", MaxStatusBodyBytes, nil)
	statementBody = newForm("StatementEnvelope", MaxStatementBodyBytes, func(c *checker, v any) {
		s := v.(*StatementBody)
		c.maxBytes("/statement/text", s.Statement.Text, MaxStatementTextBytes)
		c.consentDates("/consent", &s.Consent)
		c.ageRange("/person/age_range", s.Person.AgeRange)
	})
)

// SchemaNames maps each Parse function to the component schema of the
// OpenAPI description it validates with.
var SchemaNames = map[string]string{
	"ParseReferral":                 referralInput.name,
	"ParseReferralReceived":         referralReceived.name,
	"ParseStatusChange":             statusChange.name,
	"ParseStatementRequest":         statementRequestInput.name,
	"ParseStatementRequestReceived": statementRequest.name,
	"ParseConsent":                  consentDecision.name,
	"ParseResponse":                 response.name,
	"ParseStatusBody":               statusBody.name,
	"ParseStatementBody":            statementBody.name,
}

func referralRules(c *checker, r *Referral) {
	c.ageRange("/person/age_range", r.Person.AgeRange)
	c.consentDates("/consent", r.Consent)
	c.maxBytes("/notes", r.Notes, MaxNotesBytes)
}

func newForm(name string, limit int, rules func(*checker, any)) *form {
	s, err := openapi.Schema(name)
	if err != nil {
		panic("body: schema " + name + ": " + err.Error())
	}
	if rules == nil {
		rules = func(*checker, any) {}
	}
	return &form{name: name, limit: limit, schema: s, rules: rules}
}

// doc is the OpenAPI description, for the x-rujukan-error annotations and
// the oneOf alternatives that errors are phrased from.
var doc = func() map[string]any {
	var d map[string]any
	if err := json.Unmarshal(openapi.JSON, &d); err != nil {
		panic("body: " + err.Error())
	}
	return d
}()

func decodeChecked(b []byte, limit int) (any, *FieldError) {
	if len(b) > limit {
		return nil, &FieldError{Field: "", Code: CodeTooLarge,
			Message: "the body is larger than " + strconv.Itoa(limit) + " bytes"}
	}
	if !utf8.Valid(b) {
		return nil, &FieldError{Field: "", Code: CodeEncoding, Message: "the body is not valid UTF-8"}
	}
	return decode(b, nil)
}

// validate checks a decoded body against the schema, then that every
// number is written as a plain integer (the schema's integers accept 1.0
// and 1e2, which Go does not read as an int).
func (f *form) validate(b []byte, inst any) []FieldError {
	c := &checker{}
	if err := f.schema.Validate(inst); err != nil {
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			c.add("", CodeSyntax, "the body cannot be validated")
		} else {
			c.collect(ve)
		}
	} else {
		c.plainIntegers(inst, nil)
	}
	if len(c.errs) == 0 {
		return nil
	}
	return c.result(b)
}

// checker collects field errors.
type checker struct {
	errs []FieldError
}

func (c *checker) add(field, code, msg string) {
	c.errs = append(c.errs, FieldError{Field: field, Code: code, Message: msg})
}

// result returns the errors without repeats, in document order, at most
// MaxErrors.
func (c *checker) result(b []byte) []FieldError {
	order := map[string]span{}
	decode(b, order) // b decoded once already
	key := func(ptr string) int {
		for p := ptr; ; {
			if s, ok := order[p]; ok {
				if p == ptr {
					return 2 * s.start
				}
				return 2*s.end - 1 // a missing member: just before its parent ends
			}
			i := strings.LastIndexByte(p, '/')
			if i < 0 {
				return 0
			}
			p = p[:i]
		}
	}
	errs := slices.Clone(c.errs)
	sort.SliceStable(errs, func(i, j int) bool {
		ki, kj := key(errs[i].Field), key(errs[j].Field)
		if ki != kj {
			return ki < kj
		}
		if errs[i].Field != errs[j].Field {
			return errs[i].Field < errs[j].Field
		}
		return rank(errs[i].Code) < rank(errs[j].Code)
	})
	// One error per field: the first by rank (a blank text is "empty",
	// not also "format").
	errs = slices.CompactFunc(errs, func(a, b FieldError) bool { return a.Field == b.Field })
	if len(errs) > MaxErrors {
		errs = append(errs[:MaxErrors-1], FieldError{Field: "", Code: CodeTooManyErrors,
			Message: "more errors were found; fix these first"})
	}
	return errs
}

// codeRank orders the codes of errors at one field, most telling first.
var codeRank = []string{CodeType, CodeRequired, CodeForbidden, CodeUnknownField, CodeEmpty, CodeEnum,
	CodeFormat, CodeRange, CodeTooLong, CodeTooMany, CodeDuplicateItem, CodeConflict}

func rank(code string) int {
	if i := slices.Index(codeRank, code); i >= 0 {
		return i
	}
	return len(codeRank)
}

// errorSpec is an x-rujukan-error annotation.
type errorSpec struct{ code, message string }

// annotation returns the x-rujukan-error of the schema at a location.
func annotation(schemaURL string) (errorSpec, bool) {
	m, _ := schemaAt(schemaURL).(map[string]any)
	x, _ := m["x-rujukan-error"].(map[string]any)
	code, _ := x["code"].(string)
	msg, _ := x["message"].(string)
	return errorSpec{code, msg}, code != "" && msg != ""
}

// schemaAt returns the raw schema at a schema location of the document.
func schemaAt(schemaURL string) any {
	frag, ok := strings.CutPrefix(schemaURL, openapi.BaseURL+"#")
	if !ok {
		return nil
	}
	if u, err := url.PathUnescape(frag); err == nil {
		frag = u
	}
	var cur any = doc
	for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		if frag == "" {
			break
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch x := cur.(type) {
		case map[string]any:
			cur = x[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			cur = x[i]
		default:
			return nil
		}
	}
	return cur
}

// oneOfNames returns the required member of each alternative of a oneOf
// made of {"required": [name]} alternatives, or nil for another oneOf.
func oneOfNames(schemaURL string) []string {
	m, _ := schemaAt(schemaURL).(map[string]any)
	alts, _ := m["oneOf"].([]any)
	var names []string
	for _, a := range alts {
		am, _ := a.(map[string]any)
		req, _ := am["required"].([]any)
		if len(am) != 1 || len(req) != 1 {
			return nil
		}
		name, _ := req[0].(string)
		names = append(names, name)
	}
	return names
}

// collect turns a validation error tree into field errors. Messages are
// built from the schema (limits, enumerations, annotations), never from
// the instance.
func (c *checker) collect(e *jsonschema.ValidationError) {
	at := pointer(e.InstanceLocation)
	switch e.ErrorKind.(type) {
	case *kind.Schema, *kind.Group, *kind.AllOf, *kind.Reference:
		for _, ce := range e.Causes {
			c.collect(ce)
		}
		return
	case *kind.Pattern:
		if k := e.ErrorKind.(*kind.Pattern); k.Got == "" {
			c.add(at, CodeEmpty, "must not be empty")
			return
		}
	case *kind.Format:
		if k := e.ErrorKind.(*kind.Format); k.Got == "" {
			c.add(at, CodeEmpty, "must not be empty")
			return
		}
	}
	switch e.ErrorKind.(type) {
	case *kind.AnyOf, *kind.OneOf, *kind.Not, *kind.Const, *kind.Pattern, *kind.Format, *kind.FalseSchema:
		if spec, ok := annotation(e.SchemaURL); ok {
			c.add(at, spec.code, spec.message)
			return
		}
	case *kind.Required:
		if spec, ok := annotation(e.SchemaURL); ok {
			for _, m := range e.ErrorKind.(*kind.Required).Missing {
				c.add(at+"/"+escapePointer(m), spec.code, spec.message)
			}
			return
		}
	}
	switch k := e.ErrorKind.(type) {
	case *kind.OneOf:
		names := oneOfNames(e.SchemaURL)
		switch {
		case names == nil:
			for _, ce := range e.Causes {
				c.collect(ce)
			}
		case k.Subschemas == nil:
			c.add(at+"/"+escapePointer(names[0]), CodeRequired, "one of "+strings.Join(names, ", ")+" is required")
		default:
			c.add(at+"/"+escapePointer(names[k.Subschemas[len(k.Subschemas)-1]]), CodeConflict,
				"give only one of "+strings.Join(names, ", "))
		}
	case *kind.AnyOf:
		for _, ce := range e.Causes {
			c.collect(ce)
		}
	case *kind.Not, *kind.FalseSchema:
		c.add(at, CodeForbidden, "must not be given")
	case *kind.Const:
		c.add(at, CodeEnum, "must be "+valueString(k.Want))
	case *kind.Pattern:
		c.add(at, CodeFormat, "must match the pattern "+k.Want)
	case *kind.Format:
		c.add(at, CodeFormat, "must be a valid "+k.Want)
	case *kind.Required:
		for _, m := range k.Missing {
			c.add(at+"/"+escapePointer(m), CodeRequired, "is required")
		}
	case *kind.DependentRequired:
		for _, m := range k.Missing {
			c.add(at+"/"+escapePointer(m), CodeRequired, "is required with "+k.Prop)
		}
	case *kind.AdditionalProperties:
		for _, p := range k.Properties {
			if len(p) > maxKeyEcho {
				c.add(at, CodeUnknownField, "has a field with an overlong unknown name")
			} else {
				c.add(at+"/"+escapePointer(p), CodeUnknownField, "is not a field of this object")
			}
		}
	case *kind.Type:
		if k.Got == "null" {
			c.add(at, CodeType, "must not be null; leave the field out instead")
		} else {
			c.add(at, CodeType, "must be "+typeNames(k.Want)+", not "+typeName(k.Got))
		}
	case *kind.Enum:
		vals := make([]string, len(k.Want))
		for i, v := range k.Want {
			vals[i] = valueString(v)
		}
		c.add(at, CodeEnum, "must be one of: "+strings.Join(vals, ", "))
	case *kind.MinLength:
		if k.Want == 1 {
			c.add(at, CodeEmpty, "must not be empty")
		} else {
			c.add(at, CodeFormat, "must be at least "+strconv.Itoa(k.Want)+" characters")
		}
	case *kind.MaxLength:
		c.add(at, CodeTooLong, "must be at most "+strconv.Itoa(k.Want)+" characters")
	case *kind.MinItems:
		if k.Want == 1 {
			c.add(at, CodeEmpty, "must have at least one item; leave the field out instead")
		} else {
			c.add(at, CodeEmpty, "must have at least "+strconv.Itoa(k.Want)+" items")
		}
	case *kind.MaxItems:
		c.add(at, CodeTooMany, "must have at most "+strconv.Itoa(k.Want)+" items")
	case *kind.UniqueItems:
		c.add(at+"/"+strconv.Itoa(max(k.Duplicates[0], k.Duplicates[1])), CodeDuplicateItem, "repeats an earlier item")
	case *kind.Minimum:
		c.add(at, CodeRange, "must be at least "+ratString(k.Want))
	case *kind.Maximum:
		c.add(at, CodeRange, "must be at most "+ratString(k.Want))
	default:
		c.add(at, CodeFormat, "is not valid here")
	}
}

func ratString(r *big.Rat) string {
	if r == nil {
		return "the limit"
	}
	return r.RatString()
}

// valueString renders a value of the schema (never of the instance).
func valueString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

func typeName(t string) string {
	switch t {
	case "object", "array", "integer":
		return "an " + t
	case "null":
		return "null"
	default:
		return "a " + t
	}
}

func typeNames(ts []string) string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = typeName(t)
	}
	return strings.Join(out, " or ")
}

// plainIntegers reports numbers not written as plain integers. It runs on
// bodies the schema accepted, where every number is a schema integer.
func (c *checker) plainIntegers(v any, path []string) {
	switch x := v.(type) {
	case map[string]any:
		for k, m := range x {
			c.plainIntegers(m, append(path, k))
		}
	case []any:
		for i, m := range x {
			c.plainIntegers(m, append(path, strconv.Itoa(i)))
		}
	case json.Number:
		if _, err := strconv.Atoi(string(x)); err != nil {
			c.add(pointer(path), CodeType, "must be a whole number written without a fraction or exponent")
		}
	}
}

// maxBytes checks a limit in bytes of UTF-8.
func (c *checker) maxBytes(field, s string, limit int) {
	if len(s) > limit {
		c.add(field, CodeTooLong, "must be at most "+strconv.Itoa(limit)+" bytes")
	}
}

// ageRange checks that an age range A-B the schema accepted has A <= B.
func (c *checker) ageRange(field, s string) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return
	}
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if err1 == nil && err2 == nil && lo > hi {
		c.add(field, CodeRange, "must be A-B with A <= B")
	}
}

// consentDates checks that a consent expires after it was recorded.
func (c *checker) consentDates(field string, cs *policy.Consent) {
	if cs != nil && cs.ExpiresAt != nil && !cs.ExpiresAt.After(cs.RecordedAt) {
		c.add(field+"/expires_at", CodeRange, "must be after recorded_at")
	}
}
