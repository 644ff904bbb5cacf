package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/stockguard/stockguard/platform/auth"
)

// Real REST answers of the running server, successes and errors, match the
// OpenAPI document it serves at /openapi.yaml.
func TestOpenAPI_RealResponsesMatchTheServedDocument(t *testing.T) {
	srv := startServer(t, postgresStore)
	res, raw := restDo(t, http.MethodGet, srv.base+"/openapi.yaml", nil, nil)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/openapi.yaml = %d", res.StatusCode)
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("served document is invalid: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: srv.base}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	admin := "Bearer " + srv.token(t, "ops", auth.RoleAdmin)
	alice := "Bearer " + srv.token(t, "alice", auth.RoleCustomer)
	bob := "Bearer " + srv.token(t, "bob", auth.RoleCustomer)

	var itemID, orderID string
	steps := []struct {
		name, method, path, auth, body string
		status                         int
		after                          func(body []byte)
	}{
		{"create item", "POST", "/v1/items", admin, `{"sku":"OAS-1","name":"Seat","initialStock":3,"maxPerCustomer":2}`, 200,
			func(b []byte) { itemID = field(t, b, "id") }},
		{"create taken sku", "POST", "/v1/items", admin, `{"sku":"OAS-1","name":"Seat"}`, 409, nil},
		{"create as customer", "POST", "/v1/items", alice, `{"sku":"OAS-2","name":"Seat"}`, 403, nil},
		{"create without token", "POST", "/v1/items", "", `{"sku":"OAS-2","name":"Seat"}`, 401, nil},
		{"create invalid", "POST", "/v1/items", admin, `{"sku":"","name":""}`, 400, nil},
		{"get item", "GET", "/v1/items/{item}", "", "", 200, nil},
		{"get missing item", "GET", "/v1/items/0192f0c4-6f1e-7a4b-9c1d-2e3f4a5b6c7d", "", "", 404, nil},
		{"list items", "GET", "/v1/items?pageSize=10", "", "", 200, nil},
		{"adjust stock", "POST", "/v1/items/{item}:adjust", admin, `{"delta":2}`, 200, nil},
		{"place hold", "POST", "/v1/orders", alice, `{"lines":[{"itemId":"{item}","quantity":1}],"holdSeconds":300,"idempotencyKey":"oas-1"}`, 200,
			func(b []byte) { orderID = field(t, b, "id") }},
		{"place past the limit", "POST", "/v1/orders", alice, `{"lines":[{"itemId":"{item}","quantity":2}]}`, 400, nil},
		{"place past the stock", "POST", "/v1/orders", bob, `{"lines":[{"itemId":"{item}","quantity":99}]}`, 400, nil},
		{"reuse a key", "POST", "/v1/orders", alice, `{"lines":[{"itemId":"{item}","quantity":2}],"idempotencyKey":"oas-1"}`, 409, nil},
		{"get order", "GET", "/v1/orders/{order}", alice, "", 200, nil},
		{"get someone else's order", "GET", "/v1/orders/{order}", bob, "", 404, nil},
		{"list orders", "GET", "/v1/orders", alice, "", 200, nil},
		{"confirm as admin", "POST", "/v1/orders/{order}:confirm", admin, `{}`, 403, nil},
		{"confirm", "POST", "/v1/orders/{order}:confirm", alice, `{}`, 200, nil},
		{"cancel", "POST", "/v1/orders/{order}:cancel", alice, `{}`, 200, nil},
	}
	for _, s := range steps {
		path := strings.NewReplacer("{item}", itemID, "{order}", orderID).Replace(s.path)
		body := strings.NewReplacer("{item}", itemID).Replace(s.body)
		req, err := http.NewRequest(s.method, srv.base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if s.auth != "" {
			req.Header.Set("Authorization", s.auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != s.status {
			t.Fatalf("%s: %d %s, want %d", s.name, res.StatusCode, got, s.status)
		}
		// Validate against the document.
		vreq, _ := http.NewRequest(s.method, srv.base+path, strings.NewReader(body))
		vreq.Header = req.Header.Clone()
		route, params, err := router.FindRoute(vreq)
		if err != nil {
			t.Fatalf("%s: %s %s is not in the document: %v", s.name, s.method, path, err)
		}
		in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
			Body: io.NopCloser(bytes.NewReader(got)), Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Fatalf("%s: response does not match the document: %v\n%s", s.name, err, got)
		}
		if s.after != nil {
			s.after(got)
		}
	}
}

// field pulls the first "id" of an item or order out of a JSON body.
func field(t *testing.T, body []byte, name string) string {
	t.Helper()
	key := fmt.Sprintf("%q:", name)
	i := bytes.Index(body, []byte(key))
	if i < 0 {
		t.Fatalf("no %s in %s", name, body)
	}
	rest := strings.TrimLeft(string(body[i+len(key):]), " ")
	return strings.SplitN(strings.TrimPrefix(rest, `"`), `"`, 2)[0]
}
