//go:build tools

// Package tools pins kwok (the kubelet stand-in: pods get IPs, become Ready, port-forward).
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
