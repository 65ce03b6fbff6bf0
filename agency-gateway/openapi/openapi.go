// Package openapi holds the OpenAPI 3.1 description of a gateway's HTTP API
// (served at /v1/openapi.json) and a checker that tests use to hold the
// gateway to it.
//
// [JSON] is the document. [Routes] lists every documented operation, so a
// test can check that the gateway serves exactly those. [Check] checks one
// response (status, content type, body against the response schema),
// [CheckHeader] its documented headers (WWW-Authenticate on 401 and 403),
// and [CheckRequest] a request body.
//
// # The schema subset
//
// The checker implements the part of JSON Schema 2020-12 the document uses:
// $ref (local), type, properties, required, additionalProperties, items,
// enum, const, pattern, minLength, maxLength, minimum, maximum, minItems,
// maxItems, uniqueItems, format (date-time and date, asserted), allOf,
// anyOf, oneOf and not; annotations are ignored. A schema keyword outside
// this subset makes the package panic at init (and its tests fail), so the
// document cannot say more than the checker checks.
//
// # Caveats
//
// Problem responses for paths and methods the API does not serve (404 and
// 405) are not operations; Check accepts them when they are problem+json
// bodies valid against the Problem schema. Query and path parameters are
// not checked.
package openapi

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// JSON is the OpenAPI 3.1 document of the gateway API.
//
//go:embed openapi.json
var JSON []byte

// Errors of Check, CheckHeader and CheckRequest.
var (
	// ErrUndocumentedPath means no path of the document matches.
	ErrUndocumentedPath = errors.New("path is not documented")
	// ErrUndocumentedMethod means the path has no operation for the method.
	ErrUndocumentedMethod = errors.New("method is not documented for this path")
	// ErrUndocumentedStatus means the operation does not document the status.
	ErrUndocumentedStatus = errors.New("status is not documented for this operation")
	// ErrContentType means the content type is not the documented one, or
	// a body is missing or present against the document.
	ErrContentType = errors.New("content type does not match the document")
	// ErrBody means the body does not match the documented schema.
	ErrBody = errors.New("body does not match the schema")
	// ErrHeader means a documented header is missing or malformed.
	ErrHeader = errors.New("header does not match the document")
)

// Route is one documented operation. Path is the template, such as
// "/v1/referrals/{id}".
type Route struct {
	Method string
	Path   string
}

var methods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// spec is the parsed document.
var spec = mustLoad(JSON)

type document struct {
	raw   map[string]any
	paths []pathItem
}

type pathItem struct {
	template string
	segments []string
	ops      map[string]map[string]any // upper-case method -> operation
}

func mustLoad(b []byte) *document {
	d, err := load(b)
	if err != nil {
		panic("openapi: the embedded document is broken: " + err.Error())
	}
	return d
}

// load parses a document and checks that every schema in it stays inside
// the subset the checker implements.
func load(b []byte) (*document, error) {
	v, err := decodeJSON(b)
	if err != nil {
		return nil, err
	}
	raw, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("the document is not an object")
	}
	if ver, _ := raw["openapi"].(string); !strings.HasPrefix(ver, "3.1.") {
		return nil, fmt.Errorf("openapi version %q, want 3.1.x", ver)
	}
	d := &document{raw: raw}
	paths, _ := raw["paths"].(map[string]any)
	for _, tmpl := range sortedKeys(paths) {
		item, _ := paths[tmpl].(map[string]any)
		pi := pathItem{template: tmpl, segments: strings.Split(tmpl, "/"), ops: map[string]map[string]any{}}
		for _, m := range methods {
			if op, ok := item[m].(map[string]any); ok {
				pi.ops[strings.ToUpper(m)] = op
			}
		}
		d.paths = append(d.paths, pi)
	}
	if len(d.paths) == 0 {
		return nil, errors.New("the document has no paths")
	}
	// Every schema reachable from components, paths and responses.
	var walk func(x any, where string) error
	walk = func(x any, where string) error {
		switch x := x.(type) {
		case map[string]any:
			for _, k := range sortedKeys(x) {
				w := where + "/" + escape(k)
				if k == "schema" {
					if err := checkKeywords(raw, x[k], w, 0); err != nil {
						return err
					}
					continue
				}
				if k == "$ref" {
					if ref, _ := x[k].(string); ref != "" {
						if _, err := resolve(raw, ref); err != nil {
							return fmt.Errorf("%s: %w", w, err)
						}
					}
				}
				if err := walk(x[k], w); err != nil {
					return err
				}
			}
		case []any:
			for i, it := range x {
				if err := walk(it, where+"/"+strconv.Itoa(i)); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(raw["paths"], "#/paths"); err != nil {
		return nil, err
	}
	comps, _ := raw["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	for _, name := range sortedKeys(schemas) {
		if err := checkKeywords(raw, schemas[name], "#/components/schemas/"+name, 0); err != nil {
			return nil, err
		}
	}
	if err := walk(comps, "#/components"); err != nil {
		return nil, err
	}
	return d, nil
}

// Routes returns every documented operation, sorted by path then method.
func Routes() []Route {
	var out []Route
	for _, p := range spec.paths {
		for _, m := range sortedKeys(anyMap(p.ops)) {
			out = append(out, Route{Method: m, Path: p.template})
		}
	}
	return out
}

func anyMap(ops map[string]map[string]any) map[string]any {
	m := make(map[string]any, len(ops))
	for k, v := range ops {
		m[k] = v
	}
	return m
}

// match finds the path item for a concrete path or a template. The query
// string, if any, is ignored. Literal segments win over parameters.
func (d *document) match(path string) *pathItem {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	segs := strings.Split(path, "/")
	var best *pathItem
	bestParams := -1
	for i := range d.paths {
		p := &d.paths[i]
		if len(p.segments) != len(segs) {
			continue
		}
		params, ok := 0, true
		for j, s := range p.segments {
			switch {
			case s == segs[j]:
			case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") && segs[j] != "":
				params++
			default:
				ok = false
			}
			if !ok {
				break
			}
		}
		if ok && (best == nil || params < bestParams) {
			best, bestParams = p, params
		}
	}
	return best
}

// deref follows $ref chains of non-schema objects (responses, headers,
// parameters).
func (d *document) deref(x any) map[string]any {
	for range maxSchemaDepth {
		m, ok := x.(map[string]any)
		if !ok {
			return nil
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		if x, _ = resolve(d.raw, ref); x == nil {
			return nil
		}
	}
	return nil
}

// response finds the documented response of an operation for a status:
// the exact code, then "4XX"-style ranges, then "default".
func (d *document) response(op map[string]any, status int) map[string]any {
	resps, _ := op["responses"].(map[string]any)
	code := strconv.Itoa(status)
	for _, k := range []string{code, code[:1] + "XX", "default"} {
		if r, ok := resps[k]; ok {
			return d.deref(r)
		}
	}
	return nil
}

// find returns the documented response for a request, or the Problem
// response for 404 and 405 outside the document.
func (d *document) find(method, path string, status int) (map[string]any, error) {
	method = strings.ToUpper(method)
	p := d.match(path)
	if p == nil {
		if status == http.StatusNotFound {
			return problemResponse, nil
		}
		return nil, fmt.Errorf("%s %s: %w", method, path, ErrUndocumentedPath)
	}
	op, ok := p.ops[method]
	if !ok {
		if status == http.StatusMethodNotAllowed {
			return problemResponse, nil
		}
		return nil, fmt.Errorf("%s %s (%s): %w", method, path, p.template, ErrUndocumentedMethod)
	}
	r := d.response(op, status)
	if r == nil {
		return nil, fmt.Errorf("%s %s: %d: %w", method, p.template, status, ErrUndocumentedStatus)
	}
	return r, nil
}

var problemResponse = map[string]any{
	"content": map[string]any{
		"application/problem+json": map[string]any{
			"schema": map[string]any{"$ref": "#/components/schemas/Problem"},
		},
	},
}

// Check checks one response of the gateway against the document: that the
// operation (method and path; a concrete path or a template, with or
// without a query) is documented, that it documents status, that
// contentType is the documented media type, and that body is valid against
// the response schema. A problem+json body must also carry the HTTP status
// in its status member.
func Check(method, path string, status int, contentType string, body []byte) error {
	r, err := spec.find(method, path, status)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("%s %s: %d", strings.ToUpper(method), path, status)
	content, _ := r["content"].(map[string]any)
	return spec.checkContent(where, content, contentType, body, status)
}

// CheckRequest checks a request body against the documented request body
// of the operation.
func CheckRequest(method, path, contentType string, body []byte) error {
	method = strings.ToUpper(method)
	p := spec.match(path)
	if p == nil {
		return fmt.Errorf("%s %s: %w", method, path, ErrUndocumentedPath)
	}
	op, ok := p.ops[method]
	if !ok {
		return fmt.Errorf("%s %s: %w", method, path, ErrUndocumentedMethod)
	}
	rb := spec.deref(op["requestBody"])
	content, _ := rb["content"].(map[string]any)
	return spec.checkContent(method+" "+path+" request", content, contentType, body, 0)
}

func (d *document) checkContent(where string, content map[string]any, contentType string, body []byte, status int) error {
	if len(content) == 0 {
		if len(body) != 0 {
			return fmt.Errorf("%s: a body where none is documented: %w", where, ErrContentType)
		}
		return nil
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return fmt.Errorf("%s: content type %q: %w", where, contentType, ErrContentType)
	}
	media, ok := content[mt].(map[string]any)
	if !ok {
		return fmt.Errorf("%s: content type %q, documented %v: %w", where, mt, sortedKeys(content), ErrContentType)
	}
	schema := media["schema"]
	var inst any
	if isJSON(mt) {
		if inst, err = decodeJSON(body); err != nil {
			return fmt.Errorf("%s: not one JSON value: %v: %w", where, err, ErrBody)
		}
	} else {
		if !utf8.Valid(body) {
			return fmt.Errorf("%s: not UTF-8 text: %w", where, ErrBody)
		}
		inst = string(body)
	}
	if schema != nil {
		v := &validator{doc: d.raw}
		v.validate(schema, inst, "", 0)
		if len(v.errs) > 0 {
			return fmt.Errorf("%s: %s: %w", where, strings.Join(v.errs, "; "), ErrBody)
		}
	}
	if mt == "application/problem+json" && status != 0 {
		m, _ := inst.(map[string]any)
		if n, _ := m["status"].(json.Number); string(n) != strconv.Itoa(status) {
			return fmt.Errorf("%s: problem status member %v differs from the HTTP status: %w", where, m["status"], ErrBody)
		}
	}
	return nil
}

func isJSON(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// CheckHeader checks the documented headers of one response: every header
// documented as required is present and matches its schema.
func CheckHeader(method, path string, status int, h http.Header) error {
	r, err := spec.find(method, path, status)
	if err != nil {
		return err
	}
	headers, _ := r["headers"].(map[string]any)
	for _, name := range sortedKeys(headers) {
		hd := spec.deref(headers[name])
		vals := h.Values(name)
		if len(vals) == 0 {
			if req, _ := hd["required"].(bool); req {
				return fmt.Errorf("%s %s: %d: %s missing: %w", strings.ToUpper(method), path, status, name, ErrHeader)
			}
			continue
		}
		if schema, ok := hd["schema"]; ok {
			for _, val := range vals {
				v := &validator{doc: spec.raw}
				v.validate(schema, val, "", 0)
				if len(v.errs) > 0 {
					return fmt.Errorf("%s %s: %d: %s: %s: %w", strings.ToUpper(method), path, status, name,
						strings.Join(v.errs, "; "), ErrHeader)
				}
			}
		}
	}
	return nil
}

// Scopes returns the scopes documented for an operation (any one of them
// suffices), nil for an operation without authentication, and false for an
// undocumented operation.
func Scopes(method, path string) ([]string, bool) {
	p := spec.match(path)
	if p == nil {
		return nil, false
	}
	op, ok := p.ops[strings.ToUpper(method)]
	if !ok {
		return nil, false
	}
	var out []string
	if list, ok := op["x-rujukan-scopes"].([]any); ok {
		for _, s := range list {
			if str, ok := s.(string); ok {
				out = append(out, str)
			}
		}
	}
	return slices.Clip(out), true
}
