// Package static holds the browser client, embedded for the gateway.
package static

import "embed"

// Files is the browser client (index.html, app.js, style.css) at the root of the
// file system, ready to be served at "/" with http.FileServerFS. It is read-only and
// safe for concurrent use.
//
//go:embed index.html app.js style.css
var Files embed.FS
