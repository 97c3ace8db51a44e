// Package kubernetes holds the Kustomize base and overlays that run the exchange on
// Kubernetes, and the test that builds every overlay and decodes every manifest
// strictly into the Kubernetes API types. It has no code of its own.
package kubernetes
