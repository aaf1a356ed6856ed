// Package deploy holds no code: its tests check the container deployment
// (docker-compose.yml, Dockerfile, deploy/nginx, deploy/prometheus,
// deploy/grafana) against the product it deploys.
package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// metric is one collector the product registers.
type metric struct {
	kind   string // Counter, Gauge, Histogram, Summary (from its Opts type)
	labels []string
	where  string
}

// registeredMetrics reads the Go sources under internal/ and cmd/ (tests
// excluded) and returns every series name a collector built from
// prometheus.{Counter,Gauge,Histogram,Summary}Opts exposes: histograms and
// summaries with their _bucket/_sum/_count series. Namespace, Subsystem and
// Name may be string literals, package string constants, or a parameter of
// a helper function literal (`latency := func(name, help string) …`) whose
// calls pass literals. Anything else fails the test: extend this reader
// rather than guess.
func registeredMetrics(t *testing.T) map[string]metric {
	t.Helper()
	out := map[string]metric{}
	for _, root := range []string{"../internal", "../cmd"} {
		pkgs := map[string][]*ast.File{}
		fset := token.NewFileSet()
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], f)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, files := range pkgs {
			consts := packageStrings(files)
			for _, f := range files {
				collectMetrics(t, fset, f, consts, out)
			}
		}
	}
	return out
}

// packageStrings returns the package-level string constants of files.
func packageStrings(files []*ast.File) map[string]string {
	consts := map[string]string{}
	for _, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if s, ok := stringLit(vs.Values[i]); ok {
							consts[name.Name] = s
						}
					}
				}
			}
		}
	}
	return consts
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func collectMetrics(t *testing.T, fset *token.FileSet, f *ast.File, consts map[string]string, out map[string]metric) {
	// Helper function literals: variable name → parameter names.
	helpers := map[string][]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		as, ok := n.(*ast.AssignStmt)
		if !ok || len(as.Lhs) != len(as.Rhs) {
			return true
		}
		for i, rhs := range as.Rhs {
			fl, ok := rhs.(*ast.FuncLit)
			id, ok2 := as.Lhs[i].(*ast.Ident)
			if !ok || !ok2 {
				continue
			}
			var params []string
			for _, field := range fl.Type.Params.List {
				for _, name := range field.Names {
					params = append(params, name.Name)
				}
			}
			helpers[id.Name] = params
		}
		return true
	})
	// Calls of each helper: the literal arguments, by parameter name.
	helperArgs := func(helper, param string) []string {
		idx := -1
		for i, p := range helpers[helper] {
			if p == param {
				idx = i
			}
		}
		var vals []string
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if id, ok := call.Fun.(*ast.Ident); ok && id.Name == helper && idx >= 0 && idx < len(call.Args) {
				if s, ok := stringLit(call.Args[idx]); ok {
					vals = append(vals, s)
				} else if s, ok := call.Args[idx].(*ast.Ident); ok && consts[s.Name] != "" {
					vals = append(vals, consts[s.Name])
				} else {
					t.Errorf("%s: cannot read the %s argument of %s(…)", fset.Position(call.Pos()), param, helper)
				}
			}
			return true
		})
		return vals
	}
	// The enclosing helper of a position, if any.
	enclosing := func(pos token.Pos) string {
		name := ""
		ast.Inspect(f, func(n ast.Node) bool {
			as, ok := n.(*ast.AssignStmt)
			if !ok || len(as.Lhs) != len(as.Rhs) {
				return true
			}
			for i, rhs := range as.Rhs {
				if fl, ok := rhs.(*ast.FuncLit); ok && fl.Pos() <= pos && pos < fl.End() {
					if id, ok := as.Lhs[i].(*ast.Ident); ok {
						name = id.Name
					}
				}
			}
			return true
		})
		return name
	}
	// Label lists: the []string{…} argument of prometheus.New…Vec(opts, labels).
	labelsOf := map[*ast.CompositeLit][]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 2 {
			return true
		}
		opts, ok1 := call.Args[0].(*ast.CompositeLit)
		list, ok2 := call.Args[1].(*ast.CompositeLit)
		if !ok1 || !ok2 {
			return true
		}
		for _, e := range list.Elts {
			if s, ok := stringLit(e); ok {
				labelsOf[opts] = append(labelsOf[opts], s)
			}
		}
		return true
	})
	ast.Inspect(f, func(n ast.Node) bool {
		cl, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		sel, ok := cl.Type.(*ast.SelectorExpr)
		if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
			return true
		}
		if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
			return true
		}
		kind := strings.TrimSuffix(sel.Sel.Name, "Opts")
		if kind != "Counter" && kind != "Gauge" && kind != "Histogram" && kind != "Summary" {
			return true
		}
		fields := map[string][]string{"Namespace": {""}, "Subsystem": {""}}
		for _, e := range cl.Elts {
			kv, ok := e.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key := kv.Key.(*ast.Ident).Name
			if key != "Namespace" && key != "Subsystem" && key != "Name" {
				continue
			}
			if s, ok := stringLit(kv.Value); ok {
				fields[key] = []string{s}
			} else if id, ok := kv.Value.(*ast.Ident); ok && consts[id.Name] != "" {
				fields[key] = []string{consts[id.Name]}
			} else if id, ok := kv.Value.(*ast.Ident); ok && enclosing(cl.Pos()) != "" {
				fields[key] = helperArgs(enclosing(cl.Pos()), id.Name)
			} else {
				t.Errorf("%s: cannot read the metric's %s (use a string literal or constant, or extend deploy/metrics_test.go)", fset.Position(kv.Pos()), key)
			}
		}
		for _, ns := range fields["Namespace"] {
			for _, sub := range fields["Subsystem"] {
				for _, name := range fields["Name"] {
					full := strings.Join(nonEmpty(ns, sub, name), "_")
					m := metric{kind: kind, labels: labelsOf[cl], where: fset.Position(cl.Pos()).String()}
					out[full] = m
					if kind == "Histogram" || kind == "Summary" {
						if kind == "Histogram" {
							out[full+"_bucket"] = metric{kind: kind, labels: append(append([]string{}, m.labels...), "le"), where: m.where}
						}
						out[full+"_sum"], out[full+"_count"] = m, m
					}
				}
			}
		}
		return true
	})
}

func nonEmpty(parts ...string) []string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func TestTheMetricReaderFindsTheKnownCollectors(t *testing.T) {
	got := registeredMetrics(t)
	for name, labels := range map[string][]string{
		"switchboard_gateway_connections":                nil,
		"switchboard_gateway_sends_total":                {"result"},
		"switchboard_gateway_disconnects_total":          {"reason"},
		"switchboard_gateway_delivery_seconds_bucket":    {"le"},
		"switchboard_gateway_consumer_lag":               nil,
		"switchboard_router_rebuild_progress_ratio":      nil,
		"switchboard_router_rebuild_records_total":       nil,
		"switchboard_router_consumer_lag":                nil,
		"switchboard_router_applied_total":               {"result"},
		"switchboard_gateway_history_page_seconds_count": nil,
	} {
		m, ok := got[name]
		if !ok {
			t.Errorf("%s not found among the %d registered series", name, len(got))
			continue
		}
		if strings.Join(m.labels, ",") != strings.Join(labels, ",") {
			t.Errorf("%s: labels %v, want %v (%s)", name, m.labels, labels, m.where)
		}
	}
}
