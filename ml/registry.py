"""The model registry: versioned artifacts under ORDERWATCH_HOME/models/ (never in git).

    models/<version>/model.joblib   the LatenessModel (joblib)
    models/<version>/metrics.json   holdout metrics, baselines, the sklearn version, the window
    models/champion.json            {"version", "pinned", "history": [...]}

A version is `<trained at>_<data window>_sklearn-<version>`. A new model becomes champion only
if it beats the current champion's average precision on the new model's own holdout (both
scored on the same rows); a pinned champion is never replaced automatically.

Pin / roll back (README "Model registry"):
    python -m ml.registry list
    python -m ml.registry pin <version>     # make <version> champion and keep it
    python -m ml.registry unpin             # let the next better model replace it
    python -m ml.registry rollback          # back to the previous champion (and pin it)

Loading refuses an artifact written by another scikit-learn version (pickles are not portable
across versions): retrain, or install the version named in the error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import joblib
import pandas as pd
import sklearn

from ml.train import LatenessModel, TrainConfig, train

ARTIFACT = "model.joblib"
METRICS = "metrics.json"
CHAMPION = "champion.json"


class RegistryError(Exception):
    """A model that cannot be loaded or promoted as asked."""


def _stamp(text: str) -> str:
    return pd.Timestamp(text).tz_convert("UTC").strftime("%Y%m%dT%H%M%SZ")


def version_name(model: LatenessModel) -> str:
    start, end = (pd.Timestamp(t).tz_convert("UTC").strftime("%Y%m%d") for t in model.data_window)
    return f"{_stamp(model.trained_at)}_{start}-{end}_sklearn-{model.sklearn_version}"


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- artifacts -------------------------------------------------------------------------
    def save(self, model: LatenessModel, report: dict) -> str:
        version = version_name(model)
        folder = self.root / version
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(model, folder / ARTIFACT)
        metrics = {
            "version": version,
            "sklearn_version": model.sklearn_version,
            "data_window": list(model.data_window),
            "trained_at": model.trained_at,
            "threshold": model.threshold,
            "saved_at": datetime.now(UTC).isoformat(),
            **report,
        }
        (folder / METRICS).write_text(json.dumps(metrics, indent=2, default=str))
        return version

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / ARTIFACT).is_file())

    def metrics(self, version: str) -> dict:
        path = self.root / version / METRICS
        if not path.is_file():
            raise RegistryError(f"model {version!r}: no {METRICS} in {path.parent}")
        return json.loads(path.read_text())

    def load(self, version: str) -> LatenessModel:
        """The artifact, after checking it was written by this scikit-learn version."""
        folder = self.root / version
        if not (folder / ARTIFACT).is_file():
            raise RegistryError(f"model {version!r} not found under {self.root}")
        written = self.metrics(version).get("sklearn_version")
        if written != sklearn.__version__:
            raise RegistryError(
                f"model {version!r} was written by scikit-learn {written}, this is "
                f"{sklearn.__version__}: retrain (materialize ml/lateness_model) or install "
                f"scikit-learn=={written}; `python -m ml.registry rollback` picks an older model"
            )
        model = joblib.load(folder / ARTIFACT)
        if not isinstance(model, LatenessModel) or model.sklearn_version != sklearn.__version__:
            raise RegistryError(f"model {version!r}: {folder / ARTIFACT} is not a usable model")
        return model

    # --- champion --------------------------------------------------------------------------
    def _state(self) -> dict:
        path = self.root / CHAMPION
        if not path.is_file():
            return {"version": None, "pinned": False, "history": []}
        return json.loads(path.read_text())

    def _write_state(self, state: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{CHAMPION}.tmp"
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.root / CHAMPION)  # atomic: a reader never sees half a file

    def champion(self) -> str | None:
        return self._state().get("version")

    def is_pinned(self) -> bool:
        return bool(self._state().get("pinned"))

    def set_champion(self, version: str, reason: str, *, pinned: bool | None = None) -> None:
        if version not in self.versions():
            raise RegistryError(f"model {version!r} not found under {self.root}")
        state = self._state()
        if state.get("version") != version:
            state["history"].append(
                {"version": version, "at": datetime.now(UTC).isoformat(), "reason": reason}
            )
        state["version"] = version
        if pinned is not None:
            state["pinned"] = pinned
        self._write_state(state)

    def consider(
        self,
        version: str,
        challenger_ap: float,
        champion_ap: float | None,
        best_rule_ap: float | None = None,
    ) -> str:
        """Promote `version` if it beats the champion, and the best single rule, on the same
        holdout; returns the decision. A model no better than a rule would only add noise to
        the exceptions, which then rest on the rules (no champion) or the champion kept."""
        current = self.champion()
        if best_rule_ap is not None and challenger_ap <= best_rule_ap:
            kept = f"kept champion {current}" if current else "no champion"
            return (
                f"not promoted ({kept}): holdout AP {challenger_ap:.4f} does not beat the best"
                f" rule's {best_rule_ap:.4f}"
            )
        if current is None:
            self.set_champion(version, "first model")
            return "promoted: no champion yet"
        if self.is_pinned():
            return f"kept pinned champion {current}"
        if champion_ap is None or challenger_ap > champion_ap:
            before = "unscored" if champion_ap is None else f"{champion_ap:.4f}"
            self.set_champion(version, f"holdout AP {challenger_ap:.4f} > {before}")
            return f"promoted: holdout AP {challenger_ap:.4f} beats champion's {before}"
        return f"kept champion {current}: its holdout AP {champion_ap:.4f} >= {challenger_ap:.4f}"

    def rollback(self) -> str:
        state = self._state()
        history = [h["version"] for h in state.get("history", [])]
        current = state.get("version")
        earlier = [v for v in history if v != current and v in self.versions()]
        if not earlier:
            raise RegistryError("no earlier champion to roll back to")
        target = earlier[-1]
        self.set_champion(target, f"rollback from {current}", pinned=True)
        return target


def champion_ap_on(registry: Registry, holdout: pd.DataFrame) -> float | None:
    """The current champion's average precision on `holdout` (the challenger's own rows)."""
    from ml.evaluate import score_metrics

    current = registry.champion()
    if current is None:
        return None
    model = registry.load(current)  # fails loudly on a version mismatch
    scores = model.predict_proba(holdout)
    return score_metrics(holdout["label"].to_numpy(), scores)["average_precision"]


def train_and_register(
    rows: pd.DataFrame, now: object, registry: Registry, config: TrainConfig | None = None
) -> dict:
    """Train (ml.train.train; ColdStart propagates), store the artifact, and promote it if it
    beats the champion on the same holdout. Returns the report with version and decision."""
    result = train(rows, now, config)
    report = result["report"]
    report["champion_ap_on_holdout"] = champion_ap_on(registry, result["holdout"])
    version = registry.save(result["model"], report)
    decision = registry.consider(
        version,
        report["model"]["average_precision"],
        report["champion_ap_on_holdout"],
        (report.get("best_rule") or {}).get("average_precision"),
    )
    report["version"] = version
    report["decision"] = decision
    report["champion"] = registry.champion()
    return report


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.registry", description=__doc__)
    parser.add_argument("command", choices=["list", "pin", "unpin", "rollback"])
    parser.add_argument("version", nargs="?")
    parser.add_argument("--root", type=Path, default=None, help="default ORDERWATCH_HOME/models")
    args = parser.parse_args(argv)
    home = Path(os.environ.get("ORDERWATCH_HOME", "./.orderwatch"))
    registry = Registry(args.root or home / "models")
    try:
        if args.command == "list":
            champion = registry.champion()
            for version in registry.versions():
                ap = registry.metrics(version).get("model", {}).get("average_precision")
                mark = "*" if version == champion else " "
                print(f"{mark} {version}  holdout AP {ap}")
            print(f"champion: {champion} ({'pinned' if registry.is_pinned() else 'not pinned'})")
        elif args.command == "pin":
            if not args.version:
                parser.error("pin needs a version")
            registry.set_champion(args.version, "pinned by hand", pinned=True)
            print(f"champion: {args.version} (pinned)")
        elif args.command == "unpin":
            registry.set_champion(registry.champion() or "", "unpinned", pinned=False)
            print("champion unpinned")
        else:
            print(f"champion: {registry.rollback()} (pinned)")
    except RegistryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
