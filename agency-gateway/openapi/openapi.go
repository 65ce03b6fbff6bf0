// Package openapi holds the OpenAPI 3.1 description of a gateway's HTTP API
// (served at /v1/openapi.json), the one source of truth for its request,
// response and envelope bodies, and a checker that tests use to hold the
// gateway to it.
//
// [JSON] is the document. [Schema] compiles one of its component schemas
// (JSON Schema 2020-12), which package body validates bodies with. [Routes]
// lists every documented operation, so a test can check that the gateway
// serves exactly those. [Check] checks one response (status, content type,
// body against the response schema), [CheckHeader] its documented headers
// (WWW-Authenticate on 401 and 403), and [CheckRequest] a request body.
//
// # Schemas
//
// Schemas are compiled with github.com/santhosh-tekuri/jsonschema/v6:
// references resolve inside the document only (nothing is loaded from
// elsewhere), format is asserted, and the formats date-time and date are
// the gateway's own: RFC 3339 with an upper-case T and a year from 1900
// (what Go's time package reads), and a YYYY-MM-DD calendar date from 1900.
// Every schema of the document is compiled at init, so a broken document
// makes the package panic (and its tests fail).
//
// # Caveats
//
// Problem responses for paths and methods the API does not serve (404 and
// 405) are not operations; Check accepts them when they are problem+json
// bodies valid against the Problem schema. Query and path parameters are
// not checked.
package openapi

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// JSON is the OpenAPI 3.1 document of the gateway API.
//
//go:embed openapi.json
var JSON []byte

// BaseURL is the URL the document is known by while compiling: a schema's
// location (jsonschema.Schema.Location, ValidationError.SchemaURL) is
// BaseURL, "#" and a JSON pointer into the document.
const BaseURL = "https://rujukan.id/openapi.json"

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

	mu       sync.Mutex
	compiler *jsonschema.Compiler
	schemas  map[string]*jsonschema.Schema // by JSON pointer
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

// maxRefDepth bounds $ref chains of responses, headers and parameters.
const maxRefDepth = 16

// load parses a document and compiles every schema in it.
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
	d := &document{raw: raw, schemas: map[string]*jsonschema.Schema{}}
	d.compiler = jsonschema.NewCompiler()
	d.compiler.DefaultDraft(jsonschema.Draft2020)
	d.compiler.AssertFormat()
	d.compiler.RegisterFormat(&jsonschema.Format{Name: "date-time", Validate: validateDateTime})
	d.compiler.RegisterFormat(&jsonschema.Format{Name: "date", Validate: validateDate})
	d.compiler.UseLoader(noLoader{})
	if err := d.compiler.AddResource(BaseURL, v); err != nil {
		return nil, err
	}
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
	// Compile every schema: the component schemas, and every "schema"
	// member under paths and components (media types, parameters,
	// headers). Check every $ref outside schemas resolves.
	var walk func(x any, where string) error
	walk = func(x any, where string) error {
		switch x := x.(type) {
		case map[string]any:
			for _, k := range sortedKeys(x) {
				w := where + "/" + escape(k)
				if k == "schema" {
					if _, err := d.schemaAt(w); err != nil {
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
		if _, err := d.schemaAt("#/components/schemas/" + escape(name)); err != nil {
			return nil, err
		}
	}
	for _, k := range sortedKeys(comps) {
		if k == "schemas" {
			continue
		}
		if err := walk(comps[k], "#/components/"+escape(k)); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// noLoader refuses to load any schema from outside the document.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("only references inside the document are allowed: %q", url)
}

// schemaAt compiles (once) the schema at a JSON pointer ("#/...") of the
// document.
func (d *document) schemaAt(ptr string) (*jsonschema.Schema, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if s, ok := d.schemas[ptr]; ok {
		return s, nil
	}
	if _, err := resolve(d.raw, ptr); err != nil {
		return nil, err
	}
	s, err := d.compiler.Compile(BaseURL + ptr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ptr, err)
	}
	d.schemas[ptr] = s
	return s, nil
}

// Schema returns the compiled component schema of that name
// (#/components/schemas/name). Compiled schemas are safe for concurrent
// use.
func Schema(name string) (*jsonschema.Schema, error) {
	return spec.schemaAt("#/components/schemas/" + escape(name))
}

// validateDateTime is the date-time format: RFC 3339 as Go's time package
// reads it (upper-case T and Z), year 1900 or later.
func validateDateTime(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	if _, err := ParseDateTime(s); err != nil {
		return err
	}
	return nil
}

var errDateTime = errors.New("not an RFC 3339 date-time with an upper-case T, year 1900 or later")

// ParseDateTime parses what the date-time format accepts: an RFC 3339
// date-time with an upper-case T and a year from 1900 to 9999.
func ParseDateTime(s string) (time.Time, error) {
	var t time.Time
	if len(s) < 20 || s[10] != 'T' {
		return time.Time{}, errDateTime
	}
	if err := t.UnmarshalText([]byte(s)); err != nil || t.Year() < 1900 {
		return time.Time{}, errDateTime
	}
	return t, nil
}

// validateDate is the date format: YYYY-MM-DD, a real calendar date, year
// 1900 or later.
func validateDate(v any) error {
	s, ok := v.(string)
	if !ok {
		return nil
	}
	t, err := time.Parse(time.DateOnly, s)
	if err != nil || len(s) != 10 || t.Year() < 1900 {
		return errors.New("not a YYYY-MM-DD date, year 1900 or later")
	}
	return nil
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

var (
	escaper   = strings.NewReplacer("~", "~0", "/", "~1")
	unescaper = strings.NewReplacer("~1", "/", "~0", "~")
)

// escape escapes one reference token of a JSON pointer.
func escape(s string) string { return escaper.Replace(s) }

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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
// parameters). It returns the object and its JSON pointer.
func (d *document) deref(x any, at string) (map[string]any, string) {
	for range maxRefDepth {
		m, ok := x.(map[string]any)
		if !ok {
			return nil, ""
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, at
		}
		if x, _ = resolve(d.raw, ref); x == nil {
			return nil, ""
		}
		at = ref
	}
	return nil, ""
}

// response finds the documented response of an operation for a status:
// the exact code, then "4XX"-style ranges, then "default".
func (d *document) response(op map[string]any, at string, status int) (map[string]any, string) {
	resps, _ := op["responses"].(map[string]any)
	code := strconv.Itoa(status)
	for _, k := range []string{code, code[:1] + "XX", "default"} {
		if r, ok := resps[k]; ok {
			return d.deref(r, at+"/responses/"+k)
		}
	}
	return nil, ""
}

// operation finds the documented operation and its JSON pointer.
func (d *document) operation(method, path string) (*pathItem, map[string]any, string, error) {
	method = strings.ToUpper(method)
	p := d.match(path)
	if p == nil {
		return nil, nil, "", fmt.Errorf("%s %s: %w", method, path, ErrUndocumentedPath)
	}
	op, ok := p.ops[method]
	if !ok {
		return p, nil, "", fmt.Errorf("%s %s (%s): %w", method, path, p.template, ErrUndocumentedMethod)
	}
	return p, op, "#/paths/" + escape(p.template) + "/" + strings.ToLower(method), nil
}

// find returns the documented response for a request and its JSON
// pointer, or the Problem response for 404 and 405 outside the document.
func (d *document) find(method, path string, status int) (map[string]any, string, error) {
	p, op, at, err := d.operation(method, path)
	if err != nil {
		if (p == nil && status == http.StatusNotFound) || (p != nil && status == http.StatusMethodNotAllowed) {
			return problemResponse, "#/components/responses/NotFound", nil
		}
		return nil, "", err
	}
	r, rat := d.response(op, at, status)
	if r == nil {
		return nil, "", fmt.Errorf("%s %s: %d: %w", strings.ToUpper(method), p.template, status, ErrUndocumentedStatus)
	}
	return r, rat, nil
}

// problemResponse stands for the 404 and 405 answers outside the
// document; its schema is the one of the NotFound response.
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
	r, at, err := spec.find(method, path, status)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("%s %s: %d", strings.ToUpper(method), path, status)
	content, _ := r["content"].(map[string]any)
	return spec.checkContent(where, content, at+"/content", contentType, body, status)
}

// CheckRequest checks a request body against the documented request body
// of the operation.
func CheckRequest(method, path, contentType string, body []byte) error {
	_, op, at, err := spec.operation(method, path)
	if err != nil {
		return err
	}
	rb, rbat := spec.deref(op["requestBody"], at+"/requestBody")
	content, _ := rb["content"].(map[string]any)
	return spec.checkContent(strings.ToUpper(method)+" "+path+" request", content, rbat+"/content", contentType, body, 0)
}

func (d *document) checkContent(where string, content map[string]any, at, contentType string, body []byte, status int) error {
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
	if _, ok := media["schema"]; ok {
		if err := d.validate(at+"/"+escape(mt)+"/schema", inst); err != nil {
			return fmt.Errorf("%s: %v: %w", where, err, ErrBody)
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

// validate checks an instance against the schema at a JSON pointer.
func (d *document) validate(ptr string, inst any) error {
	s, err := d.schemaAt(ptr)
	if err != nil {
		return err
	}
	return s.Validate(inst)
}

func isJSON(mt string) bool {
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// CheckHeader checks the documented headers of one response: every header
// documented as required is present and matches its schema.
func CheckHeader(method, path string, status int, h http.Header) error {
	r, at, err := spec.find(method, path, status)
	if err != nil {
		return err
	}
	headers, _ := r["headers"].(map[string]any)
	for _, name := range sortedKeys(headers) {
		hd, hat := spec.deref(headers[name], at+"/headers/"+escape(name))
		vals := h.Values(name)
		if len(vals) == 0 {
			if req, _ := hd["required"].(bool); req {
				return fmt.Errorf("%s %s: %d: %s missing: %w", strings.ToUpper(method), path, status, name, ErrHeader)
			}
			continue
		}
		if _, ok := hd["schema"]; ok {
			for _, val := range vals {
				if err := spec.validate(hat+"/schema", val); err != nil {
					return fmt.Errorf("%s %s: %d: %s: %v: %w", strings.ToUpper(method), path, status, name, err, ErrHeader)
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

// Enum returns the values of the enumeration defined by component schema
// name ("DeclineReason"), or nil: code that must branch on such values
// reads them here, so each enumeration is written once, in openapi.json.
func Enum(name string) []string {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Enum []string `json:"enum"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(JSON, &doc); err != nil {
		return nil
	}
	return doc.Components.Schemas[name].Enum
}
