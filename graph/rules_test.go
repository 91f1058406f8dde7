package graph_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"

	"github.com/tenantplane/tenantplane/graph"
	"github.com/tenantplane/tenantplane/schema"
	"github.com/tenantplane/tenantplane/tenancy/authz"
)

// policyActions lists every "object.action" some role holds.
func policyActions(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, line := range strings.Split(string(schema.CasbinPolicy), "\n") {
		f := strings.Split(strings.TrimSpace(line), ", ")
		if f[0] == "p" {
			out[f[2]+"."+f[3]] = true
		}
	}
	require.NotEmpty(t, out)
	return out
}

// parentIDs names, per scope that can take its ID from the parent, the
// types that carry one.
var parentIDs = map[string][]string{
	"NAMESPACE": {"Namespace", "Member", "Invitation"},
	"ORG":       {"Org", "OrgMember"},
}

// checkAuthRules returns one error per field of s that lacks a sound
// @auth rule.
func checkAuthRules(s *ast.Schema, actions map[string]bool) []error {
	var errs []error
	bad := func(typ, field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", typ, field, fmt.Sprintf(format, args...)))
	}
	for _, def := range s.Types {
		if def.Kind != ast.Object || strings.HasPrefix(def.Name, "__") {
			continue
		}
		root := def.Name == "Query" || def.Name == "Mutation" || def.Name == "Subscription"
		for _, f := range def.Fields {
			if strings.HasPrefix(f.Name, "__") {
				continue
			}
			var rules []*ast.Directive
			for _, d := range f.Directives {
				if d.Name == "auth" {
					rules = append(rules, d)
				}
			}
			if len(rules) != 1 {
				bad(def.Name, f.Name, "has %d @auth rules, want exactly one", len(rules))
				continue
			}
			arg := func(name string) string {
				if a := rules[0].Arguments.ForName(name); a != nil && a.Value != nil {
					return a.Value.Raw
				}
				return ""
			}
			scope, action, id := arg("scope"), arg("action"), arg("id")
			switch scope {
			case "PUBLIC", "USER", "PARENT":
				if action != "" || id != "" {
					bad(def.Name, f.Name, "scope %s takes neither action nor id", scope)
				}
				if scope == "PARENT" && root {
					bad(def.Name, f.Name, "a root field has no parent")
				}
				if scope == "PUBLIC" && def.Name != "Mutation" && def.Name != "Query" {
					bad(def.Name, f.Name, "only root fields may be public")
				}
				continue
			case "SELF":
				if def.Name != "User" {
					bad(def.Name, f.Name, "scope SELF belongs on type User")
				}
			case "NAMESPACE", "ORG", "INVITATION", "PLATFORM":
			default:
				bad(def.Name, f.Name, "unknown scope %q", scope)
				continue
			}
			obj, _, _ := strings.Cut(action, ".")
			if _, known := authz.PolicyType(obj); !known || !authz.Action(action).Valid() || !actions[action] {
				bad(def.Name, f.Name, "action %q is granted to no role of the policy", action)
			}
			switch {
			case scope == "PLATFORM" || scope == "SELF":
				if id != "" {
					bad(def.Name, f.Name, "scope %s takes no id", scope)
				}
			case id != "":
				if !idArgument(s, f.Arguments, strings.Split(id, ".")) {
					bad(def.Name, f.Name, "id %q names no ID argument", id)
				}
			case !contains(parentIDs[scope], def.Name):
				bad(def.Name, f.Name, "scope %s needs an id argument on type %s", scope, def.Name)
			}
		}
	}
	return errs
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// idArgument reports whether path leads through the arguments (and input
// objects) to a non-null ID.
func idArgument(s *ast.Schema, args ast.ArgumentDefinitionList, path []string) bool {
	a := args.ForName(path[0])
	if a == nil {
		return false
	}
	typ := a.Type
	for _, part := range path[1:] {
		in := s.Types[typ.Name()]
		if in == nil || in.Kind != ast.InputObject {
			return false
		}
		f := in.Fields.ForName(part)
		if f == nil {
			return false
		}
		typ = f.Type
	}
	return typ.NamedType == "ID" && typ.NonNull
}

// TestEveryFieldHasAnAuthRule walks the parsed schema: a field added
// without a sound @auth rule fails here.
func TestEveryFieldHasAnAuthRule(t *testing.T) {
	t.Parallel()
	s := graph.NewExecutableSchema(graph.Deps{}).Schema()
	fields := 0
	for _, def := range s.Types {
		if def.Kind == ast.Object && !strings.HasPrefix(def.Name, "__") {
			fields += len(def.Fields)
		}
	}
	require.Greater(t, fields, 100)
	for _, err := range checkAuthRules(s, policyActions(t)) {
		t.Error(err)
	}
}

// TestAuthRuleCheckerCatchesMistakes shows the walk above can fail.
func TestAuthRuleCheckerCatchesMistakes(t *testing.T) {
	t.Parallel()
	directive, err := schema.GraphQL.ReadFile("graphql/schema.graphqls")
	require.NoError(t, err)
	// The directive and its enum from the real SDL, then one bad schema each.
	head := string(directive)
	head = head[:strings.Index(head, "\"An instant")]
	cases := map[string]string{
		"no rule":          `type Query { a: Int }`,
		"two rules":        `type Query { a: Int @auth(scope: USER) @auth(scope: PUBLIC) }`,
		"parent at root":   `type Query { a: Int @auth(scope: PARENT) }`,
		"no action":        `type Query { a(id: ID!): Int @auth(scope: NAMESPACE, id: "id") }`,
		"unknown action":   `type Query { a(id: ID!): Int @auth(scope: NAMESPACE, action: "namespace.fly", id: "id") }`,
		"missing argument": `type Query { a(id: ID!): Int @auth(scope: NAMESPACE, action: "namespace.read", id: "nsId") }`,
		"not an ID":        `type Query { a(id: Int!): Int @auth(scope: NAMESPACE, action: "namespace.read", id: "id") }`,
		"no parent ID":     `type Query { a: T @auth(scope: USER) } type T { b: Int @auth(scope: ORG, action: "org.read") }`,
		"public leaf":      `type Query { a: T @auth(scope: USER) } type T { b: Int @auth(scope: PUBLIC) }`,
		"self elsewhere":   `type Query { a: T @auth(scope: USER) } type T { b: Int @auth(scope: SELF, action: "user.read") }`,
		"action on USER":   `type Query { a: Int @auth(scope: USER, action: "user.read") }`,
		"bad input path":   `input I { x: ID } type Query { a(in: I!): Int @auth(scope: ORG, action: "org.read", id: "in.x") }`,
	}
	actions := policyActions(t)
	for name, sdl := range cases {
		s, err := gqlparser.LoadSchema(&ast.Source{Name: "head", Input: head}, &ast.Source{Name: name, Input: sdl})
		if name == "two rules" {
			require.Error(t, err, "@auth is not repeatable: the parser refuses a second one")
			continue
		}
		require.NoError(t, err, name)
		require.NotEmpty(t, checkAuthRules(s, actions), name)
	}
	ok := `input I { x: ID! } type Query { a(in: I!): Int @auth(scope: ORG, action: "org.read", id: "in.x") }`
	s, err := gqlparser.LoadSchema(&ast.Source{Name: "head", Input: head}, &ast.Source{Name: "ok", Input: ok})
	require.NoError(t, err)
	require.Empty(t, checkAuthRules(s, actions))
}
