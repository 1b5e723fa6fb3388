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


def _file_sha256(file: Path) -> str:
    with open(file, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


@dataclass
class Artifact:
    version: str
    path: Path
    manifest: dict

    def has(self, name: str) -> bool:
        """Whether the version holds ``name``: one file, or a folder of parts (``name/part-*``)."""
        return name in self.manifest.get("files", {}) or bool(self.parts(name))

    def parts(self, name: str) -> list[str]:
        """The part files of a folder ``name`` (a distributed engine writes each table as one), in order."""
        return sorted(file for file in self.manifest.get("files", {}) if file.startswith(f"{name}/"))

    def read_bytes(self, name: str) -> bytes:
        """A file's bytes, after checking its hash against the manifest."""
        expected = self.manifest["files"].get(name)
        if expected is None:
            raise ArtifactError(f"{name} is not listed in {self.version}'s manifest")
        file = self.path / name
        if file.is_symlink() or not file.is_file() or not file.resolve().is_relative_to(self.path.resolve()):
            raise ArtifactError(f"{file} is missing or is a link")
        payload = file.read_bytes()
        if _sha256(payload) != expected:
            raise ArtifactError(f"{file} does not match its sha256 in the manifest")
        return payload

    def frame(self, name: str) -> pd.DataFrame:
        """A Parquet table: the file ``name``, or its parts one after another."""
        if name in self.manifest.get("files", {}):
            return pd.read_parquet(io.BytesIO(self.read_bytes(name)))
        parts = [pd.read_parquet(io.BytesIO(self.read_bytes(part))) for part in self.parts(name)]
        if not parts:
            raise ArtifactError(f"{name} is not listed in {self.version}'s manifest")
        return pd.concat(parts, ignore_index=True)

    def json(self, name: str):
        return json.loads(self.read_bytes(name))

    def pickled(self, name: str):
        return joblib.load(io.BytesIO(self.read_bytes(name)))


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()

    def write(self, version: str, files: dict[str, bytes], manifest: dict) -> Artifact:
        staged = self.stage(version)
        for name, payload in files.items():
            (staged / name).write_bytes(payload)
        return self.seal(version, manifest)

    def stage(self, version: str) -> Path:
        """The folder a version is written into before ``seal`` makes it visible."""
        staged = self._staging(version)
        staged.mkdir(parents=True, exist_ok=False)
        return staged

    def seal(self, version: str, manifest: dict) -> Artifact:
        """Hash every file staged for ``version`` (parts in folders included), write the manifest and
        make the version visible, whole: readers never see half a version."""
        staged, path = self._staging(version), self._inside(version)
        hashes = {file.relative_to(staged).as_posix(): _file_sha256(file)
                  for file in sorted(staged.rglob("*")) if file.is_file()}
        manifest = {**manifest, "model_version": version, "files": hashes}
        (staged / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        os.replace(staged, path)
        (self.root / LATEST).write_text(version)
        return Artifact(version, path, manifest)

    def _staging(self, version: str) -> Path:
        return self._inside(version).with_name(f".{version}.tmp")

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
