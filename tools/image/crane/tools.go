//go:build tools

// Package tools records the pinned crane command so that go.mod keeps its module.
package tools

import _ "github.com/google/go-containerregistry/cmd/crane"
