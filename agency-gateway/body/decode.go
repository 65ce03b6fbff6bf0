package body

import (
	"encoding/json"
	"strconv"
	"strings"
)

// maxDepth bounds the nesting of a body. The deepest valid path is
// /consent/purposes/0 or /person/languages/0 (depth 3); anything much
// deeper is refused before it costs anything.
const maxDepth = 8

// span is where a value sits in document order: the ordinal of its start
// and of its end (the same for a scalar).
type span struct{ start, end int }

// decoder reads one JSON value (RFC 8259) strictly from valid UTF-8: no
// duplicate keys, bounded depth. Objects become map[string]any, arrays
// []any, numbers json.Number, as the schema validator reads them; strings
// decode exactly as encoding/json decodes them. When order is not nil the
// decoder records the span of every value by JSON pointer, which sorts
// errors into document order.
type decoder struct {
	b     []byte
	i     int
	order map[string]span
	n     int
	err   *FieldError
}

// decode reads exactly one JSON value from b (valid UTF-8): strict syntax,
// no duplicate keys, no trailing data, bounded depth.
func decode(b []byte, order map[string]span) (any, *FieldError) {
	d := &decoder{b: b, order: order}
	v, ok := d.value(make([]string, 0, maxDepth+2))
	if !ok {
		return nil, d.err
	}
	d.space()
	if d.i < len(d.b) {
		return nil, &FieldError{Field: "", Code: CodeTrailingData,
			Message: "the body must hold exactly one JSON value"}
	}
	return v, nil
}

func (d *decoder) fail(code, msg string, field string) bool {
	if d.err == nil {
		d.err = &FieldError{Field: field, Code: code, Message: msg}
	}
	return false
}

// syntax reports malformed JSON at the current byte, or a body that ends
// too early.
func (d *decoder) syntax() bool {
	if d.i >= len(d.b) {
		return d.fail(CodeSyntax, "the body is empty or truncated", "")
	}
	return d.fail(CodeSyntax, "malformed JSON at byte "+strconv.Itoa(d.i), "")
}

func (d *decoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *decoder) mark(path []string, start int) {
	if d.order != nil {
		d.order[pointer(path)] = span{start, d.n}
	}
	d.n++
}

// value reads one value at path (the reference tokens of its pointer,
// unescaped; path has room for maxDepth+1 tokens).
func (d *decoder) value(path []string) (any, bool) {
	if len(path) > maxDepth {
		return nil, d.fail(CodeSyntax, "the body is nested too deeply", "")
	}
	d.space()
	if d.i >= len(d.b) {
		return nil, d.syntax()
	}
	start := d.n
	switch c := d.b[d.i]; {
	case c == '{':
		d.i++
		d.n++
		m := make(map[string]any)
		d.space()
		if d.i < len(d.b) && d.b[d.i] == '}' {
			d.i++
			d.mark(path, start)
			return m, true
		}
		for {
			d.space()
			if d.i >= len(d.b) || d.b[d.i] != '"' {
				return nil, d.syntax()
			}
			key, ok := d.str()
			if !ok {
				return nil, false
			}
			if _, seen := m[key]; seen {
				return nil, d.fail(CodeDuplicateKey, "the key appears more than once", pointer(append(path, key)))
			}
			d.space()
			if d.i >= len(d.b) || d.b[d.i] != ':' {
				return nil, d.syntax()
			}
			d.i++
			v, ok := d.value(append(path, key))
			if !ok {
				return nil, false
			}
			m[key] = v
			d.space()
			if d.i >= len(d.b) {
				return nil, d.syntax()
			}
			if d.b[d.i] == ',' {
				d.i++
				continue
			}
			if d.b[d.i] != '}' {
				return nil, d.syntax()
			}
			d.i++
			d.mark(path, start)
			return m, true
		}
	case c == '[':
		d.i++
		d.n++
		a := []any{}
		d.space()
		if d.i < len(d.b) && d.b[d.i] == ']' {
			d.i++
			d.mark(path, start)
			return a, true
		}
		for {
			v, ok := d.value(append(path, strconv.Itoa(len(a))))
			if !ok {
				return nil, false
			}
			a = append(a, v)
			d.space()
			if d.i >= len(d.b) {
				return nil, d.syntax()
			}
			if d.b[d.i] == ',' {
				d.i++
				continue
			}
			if d.b[d.i] != ']' {
				return nil, d.syntax()
			}
			d.i++
			d.mark(path, start)
			return a, true
		}
	case c == '"':
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		d.mark(path, start)
		return s, true
	case c == '-' || (c >= '0' && c <= '9'):
		n, ok := d.number()
		if !ok {
			return nil, false
		}
		d.mark(path, start)
		return n, true
	default:
		for _, lit := range [...]struct {
			text string
			v    any
		}{{"true", true}, {"false", false}, {"null", nil}} {
			if strings.HasPrefix(string(d.b[d.i:min(len(d.b), d.i+5)]), lit.text) {
				d.i += len(lit.text)
				d.mark(path, start)
				return lit.v, true
			}
		}
		if d.i+5 > len(d.b) && strings.HasPrefix("true false null", string(d.b[d.i:])) {
			d.i = len(d.b)
		}
		return nil, d.syntax()
	}
}

// str reads a string at d.i (a '"'). Strings with escapes are decoded by
// encoding/json, so they read exactly as json.Unmarshal reads them later.
func (d *decoder) str() (string, bool) {
	start := d.i
	d.i++
	escaped := false
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			if !escaped {
				return string(d.b[start+1 : d.i-1]), true
			}
			var s string
			if err := json.Unmarshal(d.b[start:d.i], &s); err != nil {
				d.i = start
				return "", d.syntax()
			}
			return s, true
		case c == '\\':
			escaped = true
			d.i++
			if d.i >= len(d.b) {
				return "", d.syntax()
			}
			switch d.b[d.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				d.i++
			case 'u':
				d.i++
				for range 4 {
					if d.i >= len(d.b) || !isHex(d.b[d.i]) {
						return "", d.syntax()
					}
					d.i++
				}
			default:
				return "", d.syntax()
			}
		case c < 0x20:
			return "", d.syntax()
		default:
			d.i++
		}
	}
	return "", d.syntax()
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number reads a number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (d *decoder) number() (json.Number, bool) {
	start := d.i
	digits := func() bool {
		from := d.i
		for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
			d.i++
		}
		return d.i > from
	}
	if d.b[d.i] == '-' {
		d.i++
	}
	if d.i < len(d.b) && d.b[d.i] == '0' {
		d.i++
	} else if !digits() {
		return "", d.syntax()
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if !digits() {
			return "", d.syntax()
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if !digits() {
			return "", d.syntax()
		}
	}
	return json.Number(d.b[start:d.i]), true
}

// pointer is the RFC 6901 JSON pointer of a path of reference tokens. A
// token longer than maxKeyEcho (always an unknown member name) ends the
// pointer at its parent, so a hostile body cannot make errors large.
func pointer(path []string) string {
	var b strings.Builder
	for _, tok := range path {
		if len(tok) > maxKeyEcho {
			break
		}
		b.WriteByte('/')
		b.WriteString(escapePointer(tok))
	}
	return b.String()
}

// maxKeyEcho is the longest member name echoed back in a field pointer.
// Longer (always unknown) names are reported at their parent object, so a
// hostile body cannot make the error list large.
const maxKeyEcho = 64

// escapePointer escapes one reference token of an RFC 6901 JSON pointer.
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return pointerEscaper.Replace(s)
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
