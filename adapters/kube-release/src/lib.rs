//! `deployctl-kube-release`: the Release custom resource (being built).
