"""deploy/kubernetes/: every core manifest validates against the Kubernetes schemas (kubernetes-validate,
offline, strict: no unknown fields), and the pieces fit together. The ServiceMonitor is a Prometheus
Operator CRD, which the bundled schemas do not cover: it is checked structurally against the Service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from monitor import config

K8S = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
VERSION = "1.30.0"  # the oldest Kubernetes the StatefulSet's pod-index label (1.28+) and these APIs suit


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((K8S / name).read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("name", ["configmap.yaml", "statefulset.yaml", "pdb.yaml", "service.yaml"])
def test_core_manifests_validate_against_the_kubernetes_schemas(name: str) -> None:
    kubernetes_validate.validate(_load(name), VERSION, strict=True)


def test_a_broken_manifest_is_refused_by_the_validator() -> None:
    sts = _load("statefulset.yaml")
    sts["spec"]["replica"] = 3  # a typo: strict validation refuses the unknown field
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, VERSION, strict=True)


def test_the_pieces_fit_ordinal_to_instance_config_scrape_and_disruption_budget() -> None:
    cm, sts, svc, pdb, sm = (
        _load(n) for n in ("configmap.yaml", "statefulset.yaml", "service.yaml", "pdb.yaml", "servicemonitor.yaml")
    )
    pod = sts["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert (
        svc["spec"]["selector"].items() <= labels.items()
        and pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    )
    assert svc["spec"]["clusterIP"] == "None" and sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert pdb["spec"]["maxUnavailable"] == 1
    (c,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    index = env["PLANTWATCH_SOURCE_INSTANCE_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == "metadata.labels['apps.kubernetes.io/pod-index']"  # ordinal -> instance
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 9108}
    # the ConfigMap's file is a valid monitor config whose instance count is the StatefulSet's replicas
    import tomllib

    data = tomllib.loads(cm["data"]["plantwatch.toml"])
    cfg, problems = config.check(data)
    assert [p for p in problems if "no such file" not in p] == []  # the secrets exist only in the cluster
    assert cfg.source.kind == "jetstream" and cfg.source.instances == sts["spec"]["replicas"]
    assert cfg.metrics.port == 9108 and cfg.metrics.bind == "0.0.0.0"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")["mountPath"]
    assert c["args"] == ["monitor", "--config", f"{mount}/plantwatch.toml"]
    # ServiceMonitor (CRD): structure and what it points at
    assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]} and ep["path"] == "/metrics"
    kustom = _load("kustomization.yaml")
    assert sorted(kustom["resources"]) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
