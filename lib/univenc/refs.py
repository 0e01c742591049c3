"""Model references, resolved in one place: what the command line and the API accept as "a model".

    torchvision:resnet18                      PyTorch's constructor, random init (no download)
    torchvision:resnet18:IMAGENET1K_V1        with those weights (torchvision's own download and cache)
    timm:resnet50 / timm:resnet50:pretrained  timm's constructor (pretrained: timm's own download and cache)
    univenc_vgg11                             a model registered with timm, by its bare name
    vgg_k3_cifar10                            a zoo network (of the preset given with ``preset=`` / --preset)
    path/to/file.pt | .pth | .safetensors     a univenc checkpoint, or a plain state dict with ``arch=`` (--arch)
    mypkg.models:make_net                     a factory of your own, called without arguments
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path

from torch import nn

__all__ = ["ModelReferenceError", "resolve_model", "load_state_dict_file"]

FORMS = ("torchvision:NAME[:WEIGHTS], timm:NAME[:pretrained], a zoo name (with --preset), a .pt/.pth/"
         ".safetensors file (a plain state dict needs --arch), or module.path:factory")


class ModelReferenceError(ValueError):
    """A model reference that cannot be resolved; the message says why and what to do."""


def _torchvision(name: str, weights: str | None, num_classes: int | None = None) -> nn.Module:
    import torch
    import torchvision

    if name not in torchvision.models.list_models():
        raise ModelReferenceError(f"torchvision has no model {name!r} (torchvision.models.list_models() lists them)")
    if weights and num_classes is not None:
        raise ModelReferenceError(f"torchvision:{name}:{weights} has its own classes: drop --num-classes")
    try:
        extra = {} if num_classes is None else {"num_classes": num_classes}
        model = torchvision.models.get_model(name, weights=weights, **extra)
    except (ValueError, KeyError) as err:
        raise ModelReferenceError(f"torchvision:{name}: unknown weights {weights!r} ({err})") from err
    except OSError as err:  # the download failed: offline
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        url = torchvision.models.get_model_weights(name)[weights].url
        raise ModelReferenceError(
            f"torchvision:{name}:{weights}: the weights could not be downloaded ({type(err).__name__}: {err}). "
            f"Connect to the internet, or place {url.rsplit('/', 1)[-1]} (from {url}) in {folder}.") from err
    if isinstance(model, torchvision.models.ResNet):  # eq. 3's noise: torchvision's init of its convs
        from .models import declare_kaiming_fan_out
        declare_kaiming_fan_out(model)
    return model


def _timm(name: str, pretrained: bool, num_classes: int | None = None) -> nn.Module:
    import timm

    if name not in timm.list_models() and not timm.is_model(name):
        raise ModelReferenceError(f"timm has no model {name!r} (timm.list_models() lists them)")
    try:
        return timm.create_model(name, pretrained=pretrained, **({} if num_classes is None else
                                                                   {"num_classes": num_classes}))
    except (OSError, RuntimeError) as err:  # the download failed: offline
        from huggingface_hub.constants import HF_HUB_CACHE
        raise ModelReferenceError(
            f"timm:{name}:pretrained: the weights could not be downloaded ({type(err).__name__}: {err}). Connect "
            f"to the internet, or place the model's Hugging Face Hub files in {HF_HUB_CACHE} (HF_HOME moves it) "
            f"and set HF_HUB_OFFLINE=1.") from err


def _registered_in_timm(name: str) -> bool:
    import timm

    import univenc.models  # noqa: F401  (registers univenc_vgg11 and univenc_vgg11_factorized)
    return timm.is_model(name)


def load_state_dict_file(path) -> dict:
    """The tensors of a ``.safetensors`` file, or the object in a ``.pt``/``.pth`` file (univenc checkpoint or
    plain state dict)."""
    path = Path(path)
    if not path.exists():
        raise ModelReferenceError(f"no such file: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    from .storage import load_checkpoint
    return load_checkpoint(path)


def _load_strict(model: nn.Module, state: dict, path, arch: str) -> nn.Module:
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        def listed(keys):
            return ", ".join(keys[:10]) + (f" ... ({len(keys)} in all)" if len(keys) > 10 else "") or "none"
        raise ModelReferenceError(f"{path} is not a state dict of {arch}: missing keys: {listed(missing)}; "
                                  f"unexpected keys: {listed(unexpected)}. Give the --arch it was saved from.")
    wrong = [k for k in own if tuple(own[k].shape) != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        raise ModelReferenceError(f"{path} does not fit {arch}: {len(wrong)} tensors have other shapes, e.g. {k} "
                                  f"{tuple(state[k].shape)} vs {tuple(own[k].shape)}")
    model.load_state_dict(state)
    return model


def _classes_in(state: dict, model: nn.Module) -> int | None:
    """The number of classes of a state dict whose only mismatch with ``model`` is its classifier: the rows of the
    mismatched last linear weight (e.g. a 10-class ``fc.weight`` for a 1000-class torchvision ResNet)."""
    own = model.state_dict()
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if set(own) != set(state) or not wrong:
        return None
    weights = [k for k in wrong if k.endswith("weight") and own[k].dim() == 2]
    if len(weights) != 1 or any(not k.startswith(weights[0].rsplit(".", 1)[0]) for k in wrong):
        return None  # not just a classifier (its weight and bias)
    return int(state[weights[0]].shape[0])


def _file(path: Path, arch: str | None, preset, root, num_classes: int | None = None) -> nn.Module:
    obj = load_state_dict_file(path)
    if isinstance(obj, nn.Module):
        return obj
    if not isinstance(obj, dict):
        raise ModelReferenceError(f"{path} holds a {type(obj).__name__}, not a state dict or a checkpoint")
    config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    if arch is None and config.get("model") is not None:  # a univenc checkpoint carries its architecture
        from .models import load_checkpoint_model
        return load_checkpoint_model(path)[0]
    if arch is None:
        raise ModelReferenceError(f"{path} is a plain state dict: give its architecture with --arch "
                                  f"(e.g. --arch torchvision:resnet18)")
    state = obj.get("state_dict", obj)
    model = resolve_model(arch, preset=preset, root=root, num_classes=num_classes)
    if num_classes is None and (classes := _classes_in(state, model)) is not None:
        model = resolve_model(arch, preset=preset, root=root, num_classes=classes)  # its classifier's own size
    return _load_strict(model, state, path, arch)


def resolve_model(ref: str, arch: str | None = None, preset=None, root=None,
                  num_classes: int | None = None) -> nn.Module:
    """The network a reference names (see the module docstring for the forms), in eval mode. ``num_classes``: the
    classes of a torchvision or timm constructor's classifier; a plain state dict whose classifier has another size
    than ``arch``'s default is loaded at its own size without it."""
    from .catalogue import ZOO_BY_NAME

    ref = str(ref)
    kind, _, rest = ref.partition(":")
    if kind == "torchvision" and rest:
        name, _, weights = rest.partition(":")
        model = _torchvision(name, weights or None, num_classes)
    elif kind == "timm" and rest:
        name, _, flag = rest.partition(":")
        if flag not in ("", "pretrained"):
            raise ModelReferenceError(f"timm:{name}:{flag}: the third part can only be 'pretrained'")
        model = _timm(name, flag == "pretrained", num_classes)
    elif ref in ZOO_BY_NAME:
        from .zoo import load_net
        if preset is None:
            raise ModelReferenceError(f"{ref} is a zoo network: give its preset (--preset smoke|cpu|paper)")
        try:
            model = load_net(ref, preset, root)
        except FileNotFoundError as err:
            raise ModelReferenceError(str(err)) from err
    elif ":" not in ref and not Path(ref).suffix and _registered_in_timm(ref):  # e.g. univenc_vgg11
        model = _timm(ref, False, num_classes)
    elif Path(ref).suffix in (".pt", ".pth", ".safetensors") or Path(ref).is_file():
        model = _file(Path(ref), arch, preset, root, num_classes)
    elif re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", ref):
        module, _, factory = ref.partition(":")
        try:
            model = getattr(importlib.import_module(module), factory)()
        except (ImportError, AttributeError) as err:
            raise ModelReferenceError(f"{ref}: cannot import the factory ({type(err).__name__}: {err})") from err
        if not isinstance(model, nn.Module):
            raise ModelReferenceError(f"{ref} returned a {type(model).__name__}, not an nn.Module")
    else:
        raise ModelReferenceError(f"cannot resolve the model {ref!r}: expected {FORMS}")
    from .models import for_inference
    return for_inference(model)
