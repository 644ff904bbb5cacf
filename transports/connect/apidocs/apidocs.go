// Package apidocs serves the OpenAPI document generated from the protos
// (/openapi.yaml) and an interactive Swagger UI reference (/docs) whose
// assets are embedded in the binary: the page loads nothing from a CDN.
//
// It imports nothing from modules.
package apidocs

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"time"
)

// openapi.yaml is a copy of gen/openapi/openapi.yaml, kept in step by
// `just generate` (go generate) and checked by `just check-generate`.
//
//go:generate cp ../../../gen/openapi/openapi.yaml openapi.yaml
//go:embed openapi.yaml
var openAPI []byte

//go:embed assets
var assets embed.FS

// OpenAPI returns the OpenAPI 3 document.
func OpenAPI() []byte { return openAPI }

// HasUI reports whether the Swagger UI assets were embedded in this build.
func HasUI() bool {
	_, err := fs.Stat(assets, "assets/swagger-ui-bundle.js")
	return err == nil
}

const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stockguard API reference</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`

const initJS = `window.ui = SwaggerUIBundle({url: "/openapi.yaml", dom_id: "#ui", deepLinking: true, persistAuthorization: true});
`

const missing = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>stockguard API reference</title></head>
<body><h1>stockguard API reference</h1>
<p>This build has no Swagger UI assets. Run <code>bash scripts/docs-assets.sh</code> (or <code>just generate</code>) and rebuild.</p>
<p>The OpenAPI document is at <a href="/openapi.yaml">/openapi.yaml</a>.</p></body></html>
`

// Routes returns the handlers by pattern.
func Routes() map[string]http.Handler {
	built := time.Now()
	sub, _ := fs.Sub(assets, "assets")
	static := http.StripPrefix("/docs/assets/", http.FileServerFS(sub))
	return map[string]http.Handler{
		"GET /openapi.yaml": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/yaml")
			http.ServeContent(w, r, "openapi.yaml", built, bytes.NewReader(openAPI))
		}),
		"GET /docs": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
			if !HasUI() {
				w.WriteHeader(http.StatusNotFound)
				_, _ = w.Write([]byte(missing))
				return
			}
			_, _ = w.Write([]byte(page))
		}),
		"GET /docs/init.js": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			_, _ = w.Write([]byte(initJS))
		}),
		"GET /docs/assets/": static,
	}
}
