// Package setting reads the settings a Config struct declares in its field
// tags, so that each default is written once, beside its field:
//
//	SendQueueBytes int `key:"gateway.send_queue_bytes" default:"1048576"`
//
// key is the setting's name in the YAML file (dots nest), and its
// environment variable is the key upper-cased with dots as underscores
// (GATEWAY_SEND_QUEUE_BYTES); a field without key is not configurable but may
// still have a default. default is written as in the YAML file: a
// duration such as 2ms or 24h, a number, a word, or a comma-separated
// list. "auto" is the default of a count whose zero means automatic.
//
// Fill gives zero fields their defaults (the packages' zero-value
// guards); the config package loads keys from a file and the environment.
package setting

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// Auto is the default of a count whose zero means "decide automatically";
// such a setting accepts "auto" or a count from 1.
const Auto = "auto"

// Field is one tagged field of a struct.
type Field struct {
	Name    string // the Go field name, for messages
	Key     string // the key tag; empty when the field is not configurable
	Default string // the default tag, as it would be written in YAML
	// Negative is true when a negative value has a meaning (tag
	// negative:"…", e.g. unlimited) and is kept rather than defaulted.
	Negative bool
	Value    reflect.Value // settable
}

// Fields returns the tagged fields of the struct ptr points to, looking
// into untagged struct fields (embedded or not).
func Fields(ptr any) []Field {
	v := reflect.ValueOf(ptr)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("setting: %T is not a pointer to a struct", ptr))
	}
	var out []Field
	walk(v.Elem(), &out)
	return out
}

var durationType = reflect.TypeOf(time.Duration(0))

func walk(v reflect.Value, out *[]Field) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		key, hasKey := sf.Tag.Lookup("key")
		def, hasDef := sf.Tag.Lookup("default")
		if !hasKey && !hasDef {
			if sf.Type.Kind() == reflect.Struct {
				walk(v.Field(i), out)
			}
			continue
		}
		_, neg := sf.Tag.Lookup("negative")
		*out = append(*out, Field{Name: t.Name() + "." + sf.Name, Key: key, Default: def, Negative: neg, Value: v.Field(i)})
	}
}

// Fill sets every zero field of the struct ptr points to that has a
// non-zero default to that default, and so every negative number unless
// the field's negative tag says what a negative value means. A default
// that does not parse as its field's type panics: tests catch it.
func Fill(ptr any) {
	for _, f := range Fields(ptr) {
		if f.Default == "" {
			continue
		}
		d := reflect.New(f.Value.Type()).Elem()
		if err := Parse(d, f.Default); err != nil {
			panic(fmt.Sprintf("setting: default of %s: %v", f.Name, err))
		}
		if d.IsZero() {
			continue
		}
		if f.Value.IsZero() || (!f.Negative && negative(f.Value)) {
			f.Value.Set(d)
		}
	}
}

func negative(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() < 0
	case reflect.Float32, reflect.Float64:
		return v.Float() < 0
	}
	return false
}

// Parse sets dst from s written as in YAML: see the package comment.
// "auto" is a zero count.
func Parse(dst reflect.Value, s string) error {
	switch {
	case dst.Type() == durationType:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		dst.SetInt(int64(d))
	case dst.CanInt():
		if s == Auto {
			dst.SetInt(0)
			return nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		dst.SetInt(n)
	case dst.CanFloat():
		x, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return err
		}
		dst.SetFloat(x)
	case dst.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		dst.SetBool(b)
	case dst.Kind() == reflect.String:
		dst.SetString(s)
	case dst.Kind() == reflect.Slice && dst.Type().Elem().Kind() == reflect.String:
		var list []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				list = append(list, p)
			}
		}
		l := reflect.MakeSlice(dst.Type(), len(list), len(list))
		for i, p := range list {
			l.Index(i).SetString(p)
		}
		dst.Set(l)
	default:
		return fmt.Errorf("unsupported type %s", dst.Type())
	}
	return nil
}
