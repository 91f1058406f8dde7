package graph_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tenantplane/tenantplane/graph"
	"github.com/tenantplane/tenantplane/graph/graphtest"
)

// FuzzGraphQL posts arbitrary documents and variables, signed in or not.
// Whatever comes in, the server must answer (no panic, no dropped
// connection) with JSON, never a 500 without a request id, and never an
// internal message. Seeds live in testdata/fuzz/FuzzGraphQL.
func FuzzGraphQL(f *testing.F) {
	e := graphtest.New(f)
	u := e.SignUp(f, "fuzz@example.com")
	f.Add(`{ me { id email } }`, `{}`, true)
	f.Add(`query($id: ID!) { namespace(id: $id) { id members { nodes { role } } } }`, `{"id": "1"}`, true)
	f.Add(`mutation { signUp(input: {email: "x@example.com", password: "p"}) { id } }`, `null`, false)
	f.Add(`{ __schema { types { name } } }`, `{}`, false)
	f.Add(`{ me { ...F } } fragment F on User { ...F }`, `{}`, true)
	f.Add(`query($id: ID!) { org(id: $id) { id } }`, `{"id": {"nested": [1, 2]}}`, true)
	f.Add("{", "{", false)
	f.Fuzz(func(t *testing.T, query, variables string, signedIn bool) {
		var body bytes.Buffer
		q, _ := json.Marshal(query)
		body.WriteString(`{"query":`)
		body.Write(q)
		body.WriteString(`,"variables":`)
		if json.Valid([]byte(variables)) {
			body.WriteString(variables)
		} else {
			v, _ := json.Marshal(variables)
			body.Write(v)
		}
		body.WriteString(`}`)
		req, err := http.NewRequest(http.MethodPost, e.Server.URL, &body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if signedIn {
			req.Header.Set("Authorization", "Bearer "+u.Token)
		}
		resp, err := e.Client.Do(req)
		if err != nil {
			t.Fatalf("no answer (the handler panicked?): %v", err)
		}
		raw, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		var out struct {
			Errors []struct {
				Message    string         `json:"message"`
				Extensions map[string]any `json:"extensions"`
			} `json:"errors"`
		}
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("status %d, not JSON: %q", resp.StatusCode, raw)
		}
		reqID := resp.Header.Get(graph.RequestIDHeader)
		if reqID == "" {
			t.Fatalf("status %d without a request id", resp.StatusCode)
		}
		for _, er := range out.Errors {
			code, _ := er.Extensions["code"].(string)
			if code == "" {
				t.Fatalf("error without a code: %q", er.Message)
			}
			if code == "INTERNAL" && !strings.Contains(er.Message, reqID) {
				t.Fatalf("internal error without its request id: %q", er.Message)
			}
		}
		if resp.StatusCode >= 500 && !bytes.Contains(raw, []byte(reqID)) {
			t.Fatalf("status %d without the request id in the body: %s", resp.StatusCode, raw)
		}
	})
}
