"""Models from the Hugging Face hub: a local snapshot of a repo id (cache first, then download)."""

from __future__ import annotations

import os
from pathlib import Path

from plait.runtime.loading.bundled import BUNDLED
from plait.runtime.loading.errors import HubUnavailableError


def hub_snapshot(repo_id: str) -> Path:
    """Local directory of hub model `repo_id` (from the HF hub cache, else downloaded)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - transformers depends on it
        raise HubUnavailableError(
            "huggingface_hub is not installed; pip install huggingface_hub"
        ) from exc
    patterns = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.model", "*.txt"]
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several unrelated types here
        if offline:
            first: Exception = exc
        else:
            try:
                return Path(snapshot_download(repo_id, allow_patterns=patterns))
            except Exception as exc2:
                first = exc2
    raise HubUnavailableError(
        f"cannot fetch {repo_id!r} from the Hugging Face hub ({type(first).__name__}: {first}); the "
        "machine may be offline (HF_HUB_OFFLINE is set or the hub is unreachable). Download the model "
        "where the hub is reachable and pass its directory, or use a bundled model: "
        f"{sorted(BUNDLED)}"
    )
