//go:build tools

// Package tools names the command scripts/cluster.sh builds, so that `go mod tidy` keeps it.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
