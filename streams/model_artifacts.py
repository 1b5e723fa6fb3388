"""Versioned model artifacts with a manifest of sha256 hashes: the trainer writes them, workers load them.

A version directory (``ARTIFACT_DIR/{model_version}/``) holds data files and
``manifest.json``: the data hash, parameters, metrics and each file's sha256.
Loading checks that the path lies inside the store, that no file is a link,
and that every hash matches before anything is parsed; the ranker is only
unpickled after that check.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import joblib
import pandas as pd

MANIFEST = "manifest.json"
LATEST = "LATEST"


class ArtifactError(ValueError):
    """An artifact is missing, outside the store, or does not match its manifest."""


def data_hash(frame: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()


def new_version(history_hash: str) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{history_hash[:8]}"


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


@dataclass
class Artifact:
    version: str
    path: Path
    manifest: dict

    def has(self, name: str) -> bool:
        return name in self.manifest.get("files", {})

    def read_bytes(self, name: str) -> bytes:
        """A file's bytes, after checking its hash against the manifest."""
        expected = self.manifest["files"].get(name)
        if expected is None:
            raise ArtifactError(f"{name} is not listed in {self.version}'s manifest")
        file = self.path / name
        if file.is_symlink() or not file.is_file():
            raise ArtifactError(f"{file} is missing or is a link")
        payload = file.read_bytes()
        if _sha256(payload) != expected:
            raise ArtifactError(f"{file} does not match its sha256 in the manifest")
        return payload

    def frame(self, name: str) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(self.read_bytes(name)))

    def json(self, name: str):
        return json.loads(self.read_bytes(name))

    def pickled(self, name: str):
        return joblib.load(io.BytesIO(self.read_bytes(name)))


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def write(self, version: str, files: dict[str, bytes], manifest: dict) -> Artifact:
        path = self._inside(version)
        tmp = path.with_name(f".{version}.tmp")
        tmp.mkdir(parents=True, exist_ok=False)
        hashes = {}
        for name, payload in files.items():
            (tmp / name).write_bytes(payload)
            hashes[name] = _sha256(payload)
        manifest = {**manifest, "model_version": version, "files": hashes}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        os.replace(tmp, path)  # a version appears whole or not at all
        (self.root / LATEST).write_text(version)
        return Artifact(version, path, manifest)

    def resolve(self, version: str) -> str:
        """``version`` itself, or for "latest" the newest version written."""
        if version != "latest":
            return version
        try:
            return (self.root / LATEST).read_text().strip()
        except OSError:
            raise ArtifactError(f"no model has been trained into {self.root} yet; run `recsys train`") from None

    def load(self, version: str = "latest") -> Artifact:
        version = self.resolve(version)
        path = self._inside(version)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read the manifest of {path}: {exc}") from None
        artifact = Artifact(version, path, manifest)
        for name in manifest.get("files", {}):
            artifact.read_bytes(name)
        return artifact

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and (p / MANIFEST).exists())

    def _inside(self, version: str) -> Path:
        path = (self.root / version).resolve()
        if path.parent != self.root or version in ("", ".", "..") or (self.root / version).is_symlink():
            raise ArtifactError(f"{version[:200]!r} is not a version directory inside the artifact store {self.root}")
        return path
