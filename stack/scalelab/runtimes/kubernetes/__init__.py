"""The stack on a Kubernetes cluster: every member is a pod (``runtime.KubernetesRuntime``).

    api.py       the Kubernetes API through the Python client (apply, exec, watch)
    render.py    the kustomization the driver writes over the lab's overlay
    members.py   member names (users-2) for pods, and telling each pod its name
    runtime.py   the protocol: up, down, members, kill/start/restart, reload, status
    nginx.py     nginx's upstream over the users pods (the driver as ingress controller)
    forward.py   port-forwards from 127.0.0.1 to single pods
    hpa.py       Kubernetes' own HorizontalPodAutoscaler behind the Autoscaler seam (lab 06)
    tools.py     kubectl: kustomize and port-forward
    context.py   the ``kubernetes`` runtime: any cluster of a kubeconfig context, images from a registry
    standby.py   lab 04's standby pod; prometheus.py lab 07's alert rules in the cluster's Prometheus

``runtimes/kind`` is this runtime on the local kind cluster.
"""
