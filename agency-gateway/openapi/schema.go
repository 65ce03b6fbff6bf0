package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// The JSON Schema subset this package implements. A schema in the document
// that uses any other keyword makes Load fail, so no part of a schema can
// go unchecked by accident.
var (
	assertions = []string{"$ref", "type", "properties", "required", "additionalProperties", "items",
		"enum", "const", "pattern", "minLength", "maxLength", "minimum", "maximum", "minItems",
		"maxItems", "uniqueItems", "format", "allOf", "anyOf", "oneOf", "not"}
	annotations = []string{"title", "description", "default", "examples", "deprecated", "readOnly",
		"writeOnly", "$comment"}
)

// maxSchemaDepth bounds $ref chains and instance nesting.
const maxSchemaDepth = 64

var (
	reMu    sync.Mutex
	reCache = map[string]*regexp.Regexp{}
)

func compilePattern(p string) (*regexp.Regexp, error) {
	reMu.Lock()
	defer reMu.Unlock()
	if re, ok := reCache[p]; ok {
		return re, nil
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, err
	}
	reCache[p] = re
	return re, nil
}

// decodeJSON decodes exactly one JSON value with numbers kept as
// json.Number.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

// validator checks instances against schemas of one document.
type validator struct {
	doc  map[string]any
	errs []string
}

func (v *validator) fail(ptr, format string, args ...any) {
	if ptr == "" {
		ptr = "/"
	}
	v.errs = append(v.errs, ptr+": "+fmt.Sprintf(format, args...))
}

// resolve follows a local reference such as "#/components/schemas/Problem".
func resolve(doc map[string]any, ref string) (any, error) {
	p, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, fmt.Errorf("only local references are supported: %q", ref)
	}
	var cur any = doc
	if p == "" {
		return cur, nil
	}
	for _, tok := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		tok = unescaper.Replace(tok)
		var ok bool
		switch c := cur.(type) {
		case map[string]any:
			cur, ok = c[tok]
		case []any:
			i, err := strconv.Atoi(tok)
			if ok = err == nil && i >= 0 && i < len(c); ok {
				cur = c[i]
			}
		}
		if !ok {
			return nil, fmt.Errorf("reference %q does not resolve", ref)
		}
	}
	return cur, nil
}

// matches reports whether inst is valid against schema, without recording
// errors.
func (v *validator) matches(schema, inst any, depth int) bool {
	sub := &validator{doc: v.doc}
	sub.validate(schema, inst, "", depth)
	return len(sub.errs) == 0
}

func (v *validator) validate(schema, inst any, ptr string, depth int) {
	if depth > maxSchemaDepth {
		v.fail(ptr, "schema or instance nested too deeply")
		return
	}
	switch s := schema.(type) {
	case bool:
		if !s {
			v.fail(ptr, "no value is allowed here")
		}
		return
	case map[string]any:
		v.validateObject(s, inst, ptr, depth)
	default:
		v.fail(ptr, "the schema is not an object or a boolean")
	}
}

func (v *validator) validateObject(s map[string]any, inst any, ptr string, depth int) {
	if ref, ok := s["$ref"].(string); ok {
		target, err := resolve(v.doc, ref)
		if err != nil {
			v.fail(ptr, "%v", err)
			return
		}
		v.validate(target, inst, ptr, depth+1)
	}
	if t, ok := s["type"]; ok {
		var types []string
		switch t := t.(type) {
		case string:
			types = []string{t}
		case []any:
			for _, x := range t {
				if xs, ok := x.(string); ok {
					types = append(types, xs)
				}
			}
		}
		if !slices.ContainsFunc(types, func(t string) bool { return hasType(inst, t) }) {
			v.fail(ptr, "is %s, want %s", typeOf(inst), strings.Join(types, " or "))
			return
		}
	}
	if e, ok := s["enum"].([]any); ok {
		if !slices.ContainsFunc(e, func(x any) bool { return equal(x, inst) }) {
			v.fail(ptr, "is not one of the allowed values %s", canonical(e))
		}
	}
	if c, ok := s["const"]; ok && !equal(c, inst) {
		v.fail(ptr, "must be %s", canonical(c))
	}
	switch x := inst.(type) {
	case string:
		v.validateString(s, x, ptr)
	case json.Number:
		v.validateNumber(s, x, ptr)
	case []any:
		v.validateArray(s, x, ptr, depth)
	case map[string]any:
		v.validateMap(s, x, ptr, depth)
	}
	if all, ok := s["allOf"].([]any); ok {
		for _, sub := range all {
			v.validate(sub, inst, ptr, depth+1)
		}
	}
	if anyOf, ok := s["anyOf"].([]any); ok {
		if !slices.ContainsFunc(anyOf, func(sub any) bool { return v.matches(sub, inst, depth+1) }) {
			v.fail(ptr, "matches none of the alternatives (anyOf)%s", describe(s))
		}
	}
	if oneOf, ok := s["oneOf"].([]any); ok {
		n := 0
		for _, sub := range oneOf {
			if v.matches(sub, inst, depth+1) {
				n++
			}
		}
		if n != 1 {
			v.fail(ptr, "matches %d of the alternatives, want exactly one (oneOf)%s", n, describe(s))
		}
	}
	if not, ok := s["not"]; ok && v.matches(not, inst, depth+1) {
		v.fail(ptr, "matches a schema it must not match (not)")
	}
}

func describe(s map[string]any) string {
	if d, ok := s["description"].(string); ok {
		return ": " + d
	}
	return ""
}

func (v *validator) validateString(s map[string]any, x string, ptr string) {
	n := utf8.RuneCountInString(x)
	if m, ok := intKeyword(s, "minLength"); ok && n < m {
		v.fail(ptr, "is shorter than %d characters", m)
	}
	if m, ok := intKeyword(s, "maxLength"); ok && n > m {
		v.fail(ptr, "is longer than %d characters", m)
	}
	if p, ok := s["pattern"].(string); ok {
		re, err := compilePattern(p)
		if err != nil {
			v.fail(ptr, "bad pattern in schema: %v", err)
		} else if !re.MatchString(x) {
			v.fail(ptr, "does not match %s", p)
		}
	}
	if f, ok := s["format"].(string); ok && !validFormat(f, x) {
		v.fail(ptr, "is not a valid %s", f)
	}
}

func validFormat(format, s string) bool {
	switch format {
	case "date-time":
		t, err := time.Parse(time.RFC3339Nano, s)
		return err == nil && len(s) >= 20 && s[10] == 'T' && t.Year() >= 1900
	case "date":
		_, err := time.Parse(time.DateOnly, s)
		return err == nil
	}
	return false
}

func (v *validator) validateNumber(s map[string]any, x json.Number, ptr string) {
	r, ok := new(big.Rat).SetString(string(x))
	if !ok {
		v.fail(ptr, "is not a number")
		return
	}
	if m, ok := s["minimum"].(json.Number); ok {
		if mr, ok := new(big.Rat).SetString(string(m)); ok && r.Cmp(mr) < 0 {
			v.fail(ptr, "is less than %s", m)
		}
	}
	if m, ok := s["maximum"].(json.Number); ok {
		if mr, ok := new(big.Rat).SetString(string(m)); ok && r.Cmp(mr) > 0 {
			v.fail(ptr, "is greater than %s", m)
		}
	}
}

func (v *validator) validateArray(s map[string]any, x []any, ptr string, depth int) {
	if m, ok := intKeyword(s, "minItems"); ok && len(x) < m {
		v.fail(ptr, "has fewer than %d items", m)
	}
	if m, ok := intKeyword(s, "maxItems"); ok && len(x) > m {
		v.fail(ptr, "has more than %d items", m)
	}
	if u, _ := s["uniqueItems"].(bool); u {
		seen := map[string]bool{}
		for i, it := range x {
			c := canonical(it)
			if seen[c] {
				v.fail(ptr+"/"+strconv.Itoa(i), "repeats an earlier item")
			}
			seen[c] = true
		}
	}
	if items, ok := s["items"]; ok {
		for i, it := range x {
			v.validate(items, it, ptr+"/"+strconv.Itoa(i), depth+1)
		}
	}
}

func (v *validator) validateMap(s map[string]any, x map[string]any, ptr string, depth int) {
	if req, ok := s["required"].([]any); ok {
		for _, r := range req {
			if k, ok := r.(string); ok {
				if _, ok := x[k]; !ok {
					v.fail(ptr+"/"+escape(k), "is required")
				}
			}
		}
	}
	props, _ := s["properties"].(map[string]any)
	for _, k := range sortedKeys(x) {
		kp := ptr + "/" + escape(k)
		if ps, ok := props[k]; ok {
			v.validate(ps, x[k], kp, depth+1)
			continue
		}
		if ap, ok := s["additionalProperties"]; ok {
			if b, isBool := ap.(bool); isBool && !b {
				v.fail(kp, "is not an allowed property")
				continue
			}
			v.validate(ap, x[k], kp, depth+1)
		}
	}
}

func intKeyword(s map[string]any, k string) (int, bool) {
	n, ok := s[k].(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(string(n))
	return i, err == nil
}

func hasType(inst any, t string) bool {
	switch t {
	case "object":
		_, ok := inst.(map[string]any)
		return ok
	case "array":
		_, ok := inst.([]any)
		return ok
	case "string":
		_, ok := inst.(string)
		return ok
	case "boolean":
		_, ok := inst.(bool)
		return ok
	case "null":
		return inst == nil
	case "number":
		_, ok := inst.(json.Number)
		return ok
	case "integer":
		n, ok := inst.(json.Number)
		if !ok {
			return false
		}
		r, ok := new(big.Rat).SetString(string(n))
		return ok && r.IsInt()
	}
	return false
}

func typeOf(inst any) string {
	switch inst.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", inst)
}

// canonical is a JSON encoding with sorted keys and numbers normalised,
// for equality.
func canonical(x any) string {
	var b strings.Builder
	writeCanonical(&b, x)
	return b.String()
}

func writeCanonical(b *strings.Builder, x any) {
	switch x := x.(type) {
	case map[string]any:
		b.WriteByte('{')
		for i, k := range sortedKeys(x) {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			writeCanonical(b, x[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, it := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, it)
		}
		b.WriteByte(']')
	case json.Number:
		if r, ok := new(big.Rat).SetString(string(x)); ok {
			b.WriteString(r.RatString())
		} else {
			b.WriteString(string(x))
		}
	default:
		xb, _ := json.Marshal(x)
		b.Write(xb)
	}
}

func equal(a, b any) bool { return canonical(a) == canonical(b) }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

var (
	escaper   = strings.NewReplacer("~", "~0", "/", "~1")
	unescaper = strings.NewReplacer("~1", "/", "~0", "~")
)

// escape escapes one reference token of an RFC 6901 JSON pointer.
func escape(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return escaper.Replace(s)
}

// checkKeywords walks a schema and reports keywords outside the subset,
// unsupported formats, bad patterns and unresolvable references.
func checkKeywords(doc map[string]any, schema any, where string, depth int) error {
	if depth > maxSchemaDepth {
		return fmt.Errorf("%s: nested too deeply", where)
	}
	s, ok := schema.(map[string]any)
	if !ok {
		if _, isBool := schema.(bool); isBool {
			return nil
		}
		return fmt.Errorf("%s: a schema must be an object or a boolean", where)
	}
	for k, val := range s {
		w := where + "/" + escape(k)
		switch {
		case slices.Contains(annotations, k):
		case !slices.Contains(assertions, k):
			return fmt.Errorf("%s: schema keyword %q is not supported by the checker", where, k)
		case k == "$ref":
			ref, _ := val.(string)
			if _, err := resolve(doc, ref); err != nil {
				return fmt.Errorf("%s: %w", w, err)
			}
		case k == "pattern":
			p, _ := val.(string)
			if _, err := compilePattern(p); err != nil {
				return fmt.Errorf("%s: %w", w, err)
			}
		case k == "format":
			if f, _ := val.(string); f != "date-time" && f != "date" {
				return fmt.Errorf("%s: format %q is not supported by the checker", w, f)
			}
		case k == "properties":
			m, ok := val.(map[string]any)
			if !ok {
				return fmt.Errorf("%s: must be an object", w)
			}
			for name, sub := range m {
				if err := checkKeywords(doc, sub, w+"/"+escape(name), depth+1); err != nil {
					return err
				}
			}
		case k == "items" || k == "additionalProperties" || k == "not":
			if err := checkKeywords(doc, val, w, depth+1); err != nil {
				return err
			}
		case k == "allOf" || k == "anyOf" || k == "oneOf":
			list, ok := val.([]any)
			if !ok || len(list) == 0 {
				return fmt.Errorf("%s: must be a non-empty array", w)
			}
			for i, sub := range list {
				if err := checkKeywords(doc, sub, w+"/"+strconv.Itoa(i), depth+1); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
