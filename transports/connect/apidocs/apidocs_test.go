package apidocs

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func TestOpenAPI_IsAValidDocumentWithExamplesAndErrors(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(OpenAPI())
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	ops := 0
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			ops++
			ok := op.Responses.Value("200")
			if ok == nil || ok.Value.Content.Get("application/json").Example == nil {
				t.Errorf("%s %s: no example response", method, path)
			}
			if method == http.MethodPost && op.RequestBody.Value.Content.Get("application/json").Example == nil {
				t.Errorf("%s %s: no example request", method, path)
			}
			errs := 0
			for code, r := range op.Responses.Map() {
				if strings.HasPrefix(code, "4") || strings.HasPrefix(code, "5") {
					errs++
					if len(r.Value.Content.Get("application/json").Examples) == 0 {
						t.Errorf("%s %s: error %s has no example body", method, path, code)
					}
				}
			}
			if errs == 0 {
				t.Errorf("%s %s: no error responses described", method, path)
			}
		}
	}
	if ops != 9 {
		t.Fatalf("document has %d operations, want the 9 REST bindings", ops)
	}
}

func TestRoutes_ServeTheDocumentAndThePage(t *testing.T) {
	mux := http.NewServeMux()
	for p, h := range Routes() {
		mux.Handle(p, h)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/openapi.yaml", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "openapi: 3.0.3") {
		t.Fatalf("/openapi.yaml = %d", rec.Code)
	}
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/docs", nil))
	if !HasUI() {
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "docs-assets.sh") {
			t.Fatalf("/docs without assets = %d %s", rec.Code, rec.Body.String())
		}
		t.Skip("Swagger UI assets not fetched (scripts/docs-assets.sh); page checked for its fallback only")
	}
	if rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "http") {
		t.Fatalf("/docs = %d; the page must load nothing from another origin:\n%s", rec.Code, rec.Body.String())
	}
	rec = httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/docs/assets/swagger-ui-bundle.js", nil))
	if rec.Code != http.StatusOK || rec.Body.Len() < 100_000 {
		t.Fatalf("bundle = %d, %d bytes", rec.Code, rec.Body.Len())
	}
}
