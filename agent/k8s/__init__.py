"""Kubernetes: the kubelet's pod-resources API, GPU-to-pod attribution, workers found as pods."""
