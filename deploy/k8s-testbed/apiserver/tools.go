//go:build tools

// Package tools pins the control plane's commands so `go mod tidy` keeps k8s.io/kubernetes:
// the API server, and the controller manager and scheduler that turn the chart's
// Deployments and DaemonSet into pods on kwok's nodes.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
