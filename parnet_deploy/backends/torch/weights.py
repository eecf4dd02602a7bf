"""The deploy-form model of an export, rebuilt from its manifest config and ``deploy.safetensors``.

safetensors holds tensors only (no pickle). The deploy form's structure follows the weights in
one place: a :class:`Fusion` whose BN scales were too small to fold keeps its BNs; the saved
keys say which, and the rebuilt model is made to match before a strict load.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import ExportError
from ...models import ParNet
from ...models.parnet import ChannelShift, Fusion, MultiBatchNorm2d
from ...reparam import reparameterize


def deploy_model(config, weights: Path) -> ParNet:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ExportError(f"{weights}: not a safetensors file of deploy weights: {e}") from e
    model = reparameterize(ParNet(config).eval(), inplace=True)
    for name, module in model.named_modules():
        if isinstance(module, Fusion) and isinstance(module[0], ChannelShift) and f"{name}.0.b1.weight" in state:
            module[0] = MultiBatchNorm2d(module[0].shift.numel() // 2)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ExportError(f"{weights}: the weights do not fit the manifest's model config: "
                          f"{str(e).splitlines()[0]}") from e
    return model.eval()
