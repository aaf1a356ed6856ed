// Package static holds the browser client, embedded for the gateway.
package static

import "embed"

// Files is the browser client (index.html, style.css and the ES modules app.js,
// core/*.js and ui/*.js) at the root of the file system, ready to be served at "/"
// with http.FileServerFS (which types .js as text/javascript). It is read-only and
// safe for concurrent use.
//
//go:embed index.html app.js style.css core/*.js ui/*.js
var Files embed.FS
