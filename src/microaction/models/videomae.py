"""VideoMAE (Tong et al., NeurIPS 2022): a plain ViT over space-time tubes, as ``transformers.VideoMAEModel``.

The clip ``[N, T, 3, H, W]`` is cut into tubes of ``tubelet_size`` frames x ``patch_size``^2 pixels
(a strided Conv3d), fixed sine-cosine position embeddings are added, and ``num_layers`` pre-norm
transformer blocks attend over all T/2 x (H/16)^2 tokens (1568 at 16 x 224^2). The clip feature is the
mean over tokens followed by ``fc_norm``, as ``VideoMAEForVideoClassification`` (and the paper's
fine-tuning) computes it; the shared head (``model.head``) replaces its classifier.

``videomae_s`` / ``videomae_b`` / ``videomae_l`` are the published ViT-S/B/L configurations (width 384 /
768 / 1024, 12 / 12 / 24 blocks, 6 / 12 / 16 heads, MLP 4x, 16 frames of 224 px, tubelet 2, patch 16);
every size setting can be overridden (``model.hidden_size=32 model.num_layers=1`` builds a tiny one).
Stochastic depth (``drop_path``, linear over blocks, as the paper's fine-tuning uses), which
``transformers`` does not implement, is put in place of the blocks' residual-branch dropouts.

Weights (``model.pretrained``): a Hugging Face model folder or hub id (``MCG-NJU/videomae-base-finetuned-kinetics``)
read by ``from_pretrained`` (``MICROACTION_OFFLINE=1``: from the local cache only); or a state-dict file in
this module's key names, ``transformers``' (with or without the ``videomae.`` prefix) or the original
VideoMAE / VideoMAE V2 release's (``blocks.0.attn.qkv.weight``, ``q_bias``, ``v_bias``; a pre-training
checkpoint's ``encoder.`` prefix and decoder are handled). The classifier is never loaded; ``fc_norm``
stays at its initialisation when the weights have none (pre-training checkpoints).

``transformers`` is imported when a VideoMAE is built, not when the registry is (it is slow to import and
an optional dependency: ``pip install 'microaction[video]'``).
"""

from __future__ import annotations

import logging
import re

import torch
import torch.nn as nn

from .base import ClipClassifier, check_frames
from .layers import DropPath, drop_path_rates
from .registry import register_model

log = logging.getLogger(__name__)


# the original release's block key names -> transformers' (VideoMAELayer)
_BLOCK_KEYS = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def _transformers():
    try:
        import transformers
    except ImportError as err:  # an optional dependency
        raise ImportError("model=videomae_*: the transformers package is not installed; "
                          "pip install 'microaction[video]' (transformers>=5)") from err
    return transformers


class VideoMAE(ClipClassifier):
    """Clip features ``[N, hidden_size]``: token mean after the last block, then ``fc_norm``. Its position
    embedding fixes the frame count and size (``num_segments``, ``input_size``)."""

    weights_name = "VideoMAE"
    # pre-training checkpoints have no fc_norm (their encoder ends in a norm the mean pooling drops)
    weights_allow_missing = ("head.", "fc_norm.")

    def __init__(
        self,
        num_segments: int,
        input_size: int,
        patch_size: int = 16,
        tubelet_size: int = 2,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.1,
        attention_dropout: float = 0.0,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        check_frames("videomae", num_segments, num_segments >= tubelet_size and num_segments % tubelet_size == 0,
                     f"a multiple of model.tubelet_size={tubelet_size} (tubes span that many frames)")
        if input_size % patch_size:
            raise ValueError(f"model.input_size={input_size} is not a multiple of model.patch_size={patch_size}")
        if hidden_size % num_heads:
            raise ValueError(f"model.hidden_size={hidden_size} is not divisible by model.num_heads={num_heads}")
        transformers = _transformers()
        config = transformers.VideoMAEConfig(
            image_size=input_size, patch_size=patch_size, num_frames=num_segments, tubelet_size=tubelet_size,
            hidden_size=hidden_size, num_hidden_layers=num_layers, num_attention_heads=num_heads,
            intermediate_size=int(hidden_size * mlp_ratio), attention_probs_dropout_prob=attention_dropout,
            hidden_dropout_prob=0.0, use_mean_pooling=True, qv_bias=True,
        )
        self.num_segments = num_segments
        self.input_size = input_size
        self.num_layer_groups = num_layers
        self.videomae = transformers.VideoMAEModel(config)
        embeddings = self.videomae.embeddings
        table = embeddings.position_embeddings
        del embeddings.position_embeddings  # a plain attribute there: as a buffer it follows .to(device)
        embeddings.register_buffer("position_embeddings", table, persistent=False)
        # stochastic depth on both residual branches of every block, where transformers has a (zero) dropout
        for layer, rate in zip(self.videomae.encoder.layer, drop_path_rates(drop_path, num_layers)):
            layer.attention.output.dropout = DropPath(rate)
            layer.output.dropout = DropPath(rate)
        if gradient_checkpointing:
            self.videomae.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.fc_norm = nn.LayerNorm(hidden_size)
        self.num_features = hidden_size

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.videomae(pixel_values=x).last_hidden_state
        return self.fc_norm(tokens.mean(1))

    def layer_group(self, name: str) -> int:
        if name.startswith("videomae.embeddings."):
            return 0
        match = re.match(r"videomae\.encoder\.layer\.(\d+)\.", name)
        return int(match.group(1)) + 1 if match else self.num_layer_groups + 1

    # --- weights --------------------------------------------------------------------------------------------
    def named_weights(self, source: str, local_files_only: bool) -> dict:
        """A Hugging Face VideoMAE folder or hub id, through ``VideoMAEForVideoClassification.from_pretrained``
        (it renames the key names of earlier ``transformers`` releases); its classifier is left out."""
        transformers = _transformers()
        try:
            hf, info = transformers.VideoMAEForVideoClassification.from_pretrained(
                source, local_files_only=local_files_only, output_loading_info=True)
        except Exception as err:  # missing folder, unknown id, no network, not a VideoMAE
            where = (" in the local Hugging Face cache (MICROACTION_OFFLINE=1 forbids downloading)"
                     if local_files_only else "")
            raise ValueError(
                f"model.pretrained={source}: no such state-dict file, and no VideoMAE model folder or hub id that "
                f"transformers could load{where}: {type(err).__name__}: {err}"
            ) from err
        missing = [k for k in info.get("missing_keys", ()) if k.startswith("videomae.")]
        if missing:
            raise ValueError(f"model.pretrained={source}: holds no VideoMAE encoder weights (missing {missing[:5]}, "
                             f"{len(missing)} in all)")
        unset = {k for k in info.get("missing_keys", ())}
        state = {k: v for k, v in hf.state_dict().items() if not k.startswith("classifier.") and k not in unset}
        if not any(k.startswith("fc_norm.") for k in state):
            log.info("model.pretrained=%s has no fc_norm (a pre-training checkpoint): it starts at its initialisation",
                     source)
        return state

    def adapt_weights(self, state: dict) -> dict:
        """The original release's and ``transformers``' key names (see the module docstring) in this module's."""
        out = {}
        for key, value in state.items():
            if key.startswith(("encoder.blocks.", "encoder.patch_embed.", "encoder.norm.")):
                key = key[len("encoder."):]  # a pre-training checkpoint's encoder
            if key.startswith(("embeddings.", "encoder.layer.")):
                key = "videomae." + key  # a bare transformers VideoMAEModel
            # transformers releases before 5 kept the query and value biases as separate parameters
            key = re.sub(r"attention\.attention\.(q|v)_bias$",
                         lambda m: f"attention.attention.{'query' if m.group(1) == 'q' else 'value'}.bias", key)
            if key.startswith("patch_embed.proj."):
                out["videomae.embeddings.patch_embeddings.projection." + key.rsplit(".", 1)[1]] = value
                continue
            match = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", key) or re.match(r"blocks\.(\d+)\.attn\.(q|v)_(bias)$", key)
            if not match:
                out[key] = value
                continue
            block, part, kind = match.groups()
            prefix = f"videomae.encoder.layer.{block}."
            if part == "attn.qkv":
                # one [3D, D] projection -> query, key, value; a key bias would shift every key of a query
                # alike, which the softmax ignores, so it is left out (the model has none)
                q, k, v = value.chunk(3)
                out[prefix + f"attention.attention.query.{kind}"] = q
                out[prefix + f"attention.attention.value.{kind}"] = v
                if kind == "weight":
                    out[prefix + "attention.attention.key.weight"] = k
            elif part in ("q", "v"):
                out[prefix + f"attention.attention.{'query' if part == 'q' else 'value'}.bias"] = value
            elif part in _BLOCK_KEYS:
                out[prefix + f"{_BLOCK_KEYS[part]}.{kind}"] = value
            else:
                out[key] = value
        return out


# The published configurations, in the order of docs/model_zoo.md. Published sizes: the VideoMAE paper's
# Kinetics-400 comparison (ViT with its 400-class classifier).
_FAMILY = dict(frames=16, size=224, family="Transformer",
               source="VideoMAE paper (Tong et al., NeurIPS 2022), Kinetics-400 table; ViT + K400 fc")
register_model("videomae_s", method="VideoMAE ViT-S/16", published_params_m=22.0,
               defaults=dict(hidden_size=384, num_layers=12, num_heads=6), **_FAMILY)(VideoMAE)
register_model("videomae_b", method="VideoMAE ViT-B/16", published_params_m=87.0,
               defaults=dict(hidden_size=768, num_layers=12, num_heads=12), **_FAMILY)(VideoMAE)
register_model("videomae_l", method="VideoMAE ViT-L/16", published_params_m=305.0,
               defaults=dict(hidden_size=1024, num_layers=24, num_heads=16, drop_path=0.2), **_FAMILY)(VideoMAE)
