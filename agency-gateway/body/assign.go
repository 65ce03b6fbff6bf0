package body

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rujukan/rujukan/agency-gateway/openapi"
)

// assign stores a decoded body (map[string]any, []any, string,
// json.Number, bool, nil) that the schema accepted into the Go value v
// points to, by the JSON names of its fields: what json.Unmarshal would do
// with the same bytes, without reading them again. Time fields are read
// with openapi.ParseDateTime (the date-time format the schema checked);
// integers must be plain (see plainIntegers).
func assign(v reflect.Value, x any) error {
	if x == nil {
		return nil // the schema refuses null; leave the zero value
	}
	if v.Type() == timeType {
		s, ok := x.(string)
		if !ok {
			return errAssign
		}
		t, err := openapi.ParseDateTime(s)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(t))
		return nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		if err := assign(p.Elem(), x); err != nil {
			return err
		}
		v.Set(p)
	case reflect.Struct:
		m, ok := x.(map[string]any)
		if !ok {
			return errAssign
		}
		fields := fieldsOf(v.Type())
		for k, mv := range m {
			i, ok := fields[k]
			if !ok {
				return errAssign
			}
			if err := assign(v.Field(i), mv); err != nil {
				return err
			}
		}
	case reflect.Slice:
		a, ok := x.([]any)
		if !ok {
			return errAssign
		}
		s := reflect.MakeSlice(v.Type(), len(a), len(a))
		for i, it := range a {
			if err := assign(s.Index(i), it); err != nil {
				return err
			}
		}
		v.Set(s)
	case reflect.String:
		s, ok := x.(string)
		if !ok {
			return errAssign
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := x.(bool)
		if !ok {
			return errAssign
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		n, ok := x.(json.Number)
		if !ok {
			return errAssign
		}
		i, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(i)
	default:
		return errAssign
	}
	return nil
}

var (
	errAssign = errors.New("body: a value does not fit its Go field")
	timeType  = reflect.TypeFor[time.Time]()
	fieldMaps sync.Map // reflect.Type -> map[string]int
)

// fieldsOf maps the JSON names of a struct's fields to their indexes.
func fieldsOf(t reflect.Type) map[string]int {
	if m, ok := fieldMaps.Load(t); ok {
		return m.(map[string]int)
	}
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = i
	}
	fieldMaps.Store(t, m)
	return m
}
