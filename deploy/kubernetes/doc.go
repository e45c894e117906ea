// Package kubernetes holds ebbflow's Kubernetes manifests (the YAML files
// beside this one, assembled by kustomization.yaml) and, in its tests, the
// check that decodes each of them strictly into the Kubernetes API types
// and holds them against the ebbflow binary: its subcommands, flags,
// configuration keys, served paths and ports, and drain timeouts. Guide:
// docs/deploy-kubernetes.md.
package kubernetes
