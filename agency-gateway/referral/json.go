package referral

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// maxDepth bounds the nesting of a body. The deepest valid path is
// /person/languages/0 (depth 3); anything much deeper is refused before it
// costs anything.
const maxDepth = 8

// node is one decoded JSON value. Objects keep their members in document
// order so errors come out in a stable order.
type node struct {
	kind    byte // 'o' object, 'a' array, 's' string, 'n' number, 'b' bool, 'z' null
	str     string
	b       bool
	members []member
	items   []*node
}

type member struct {
	key string
	val *node
}

func (n *node) typeName() string {
	switch n.kind {
	case 'o':
		return "an object"
	case 'a':
		return "an array"
	case 's':
		return "a string"
	case 'n':
		return "a number"
	case 'b':
		return "a boolean"
	default:
		return "null"
	}
}

// errTooDeep stops decoding of an over-nested body.
var errTooDeep = errors.New("nested too deeply")

// dupKeyError reports a repeated object member.
type dupKeyError struct{ ptr string }

func (e *dupKeyError) Error() string { return "duplicate key at " + e.ptr }

// decode reads exactly one JSON value from b: strict syntax, no duplicate
// keys, no trailing data, bounded depth. The returned FieldError is nil on
// success.
func decode(b []byte) (*node, *FieldError) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	n, err := readValue(dec, 0, "")
	if err != nil {
		return nil, decodeError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &FieldError{Field: "", Code: CodeTrailingData,
			Message: "the body must hold exactly one JSON value"}
	}
	return n, nil
}

func decodeError(err error) *FieldError {
	var dup *dupKeyError
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &dup):
		return &FieldError{Field: dup.ptr, Code: CodeDuplicateKey, Message: "the key appears more than once"}
	case errors.Is(err, errTooDeep):
		return &FieldError{Field: "", Code: CodeSyntax, Message: "the body is nested too deeply"}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &FieldError{Field: "", Code: CodeSyntax, Message: "the body is empty or truncated"}
	case errors.As(err, &syn):
		return &FieldError{Field: "", Code: CodeSyntax, Message: fmt.Sprintf("malformed JSON at byte %d", syn.Offset)}
	default:
		return &FieldError{Field: "", Code: CodeSyntax, Message: "malformed JSON"}
	}
}

func readValue(dec *json.Decoder, depth int, ptr string) (*node, error) {
	if depth > maxDepth {
		return nil, errTooDeep
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: 'o'}
			seen := make(map[string]bool)
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := kt.(string)
				if !ok {
					return nil, &json.SyntaxError{Offset: dec.InputOffset()}
				}
				kp := childPointer(ptr, key)
				if seen[key] {
					return nil, &dupKeyError{ptr: kp}
				}
				seen[key] = true
				v, err := readValue(dec, depth+1, kp)
				if err != nil {
					return nil, err
				}
				n.members = append(n.members, member{key: key, val: v})
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			return n, nil
		case '[':
			n := &node{kind: 'a'}
			for dec.More() {
				v, err := readValue(dec, depth+1, fmt.Sprintf("%s/%d", ptr, len(n.items)))
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return n, nil
		default:
			return nil, &json.SyntaxError{Offset: dec.InputOffset()}
		}
	case string:
		return &node{kind: 's', str: t}, nil
	case json.Number:
		return &node{kind: 'n', str: string(t)}, nil
	case bool:
		return &node{kind: 'b', b: t}, nil
	case nil:
		return &node{kind: 'z'}, nil
	}
	return nil, &json.SyntaxError{Offset: dec.InputOffset()}
}

// maxKeyEcho is the longest member name echoed back in a field pointer.
// Longer (always unknown) names are reported at their parent object, so a
// hostile body cannot make the error list large.
const maxKeyEcho = 64

// childPointer is the JSON pointer of member key of the object at ptr.
func childPointer(ptr, key string) string {
	if len(key) > maxKeyEcho {
		return ptr
	}
	return ptr + "/" + escapePointer(key)
}

// escapePointer escapes one reference token of an RFC 6901 JSON pointer.
func escapePointer(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return pointerEscaper.Replace(s)
}

var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")
