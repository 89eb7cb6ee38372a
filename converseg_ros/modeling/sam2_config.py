"""SAM2 model configs treated as data: read, resolve, check every ``_target_`` against an allow-list, and only
then instantiate.

A SAM2 config is a hydra YAML whose ``_target_`` keys name the classes to build. ``hydra.utils.instantiate``
would call any importable callable named there (``shutil.copyfile``, ``builtins.open``), so a config from a
user, a preset or a node parameter could run code. Here a config is resolved once (references between its
own keys evaluated; resolver calls such as ``${oc.env:…}`` refused), walked whole (mappings, lists,
``_args_``), and every target must be a ``torch.nn.Module`` class defined in ``sam2.modeling`` under exactly
the dotted name given. Anything else is refused with the key path and the target before anything is
imported from outside SAM2 or instantiated; what is instantiated is the very structure that was checked,
with no interpolation left in it.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from converseg_ros.errors import ModelConfigError

ALLOWED_PREFIX = "sam2.modeling."
# hydra keys: _target_ and _args_ are checked like any value; the others change how hydra calls targets
# (partial objects, unconverted containers, no recursion) and SAM2's configs never use them.
REFUSED_HYDRA_KEYS = ("_partial_", "_recursive_", "_convert_")
# constructor arguments that make a SAM2 class read a file (Hiera's weights_path: an unrestricted
# torch.load); weights come from the checkpoint options, loaded with weights_only=True.
REFUSED_ARGUMENTS = ("weights_path",)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESOLVER_CALL = re.compile(r"\$\{\s*([\w.\-]+)\s*:")
MAX_CONFIG_BYTES = 1 << 20


def _describe(source: str) -> str:
    return f"SAM2 config {source}"


def load_config(config: str) -> dict[str, Any]:
    """The config named by ``config`` (a YAML path, or a config name bundled with the ``sam2`` package such
    as ``sam2_hiera_l.yaml`` or ``configs/sam2.1/sam2.1_hiera_l.yaml``), resolved to plain containers and
    checked by :func:`check_config`. Raises ModelConfigError naming the config and the key at fault."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(config)
    source = _describe(str(config))
    try:
        if path.is_file():
            if path.stat().st_size > MAX_CONFIG_BYTES:
                raise ModelConfigError(f"{source}: larger than {MAX_CONFIG_BYTES} bytes")
            cfg = OmegaConf.load(path)
        else:
            cfg = _compose_bundled(config, source)
        if not isinstance(cfg, DictConfig):
            raise ModelConfigError(f"{source}: expected a mapping at the top level")
        _check_no_resolvers(OmegaConf.to_container(cfg, resolve=False), source)
        plain = OmegaConf.to_container(cfg, resolve=True)
    except ModelConfigError:
        raise
    except (OmegaConfBaseException, OSError, ValueError) as err:  # YAML or interpolation errors
        raise ModelConfigError(f"{source}: cannot be read ({type(err).__name__}: {err})") from err
    check_config(plain, source)
    if not isinstance(plain.get("model"), dict):
        raise ModelConfigError(f"{source}: no 'model' mapping")
    return plain


def _compose_bundled(name: str, source: str):
    """A config bundled with sam2, through hydra's search path on the sam2 package."""
    import sam2  # noqa: F401  (initialises hydra's search path on the sam2 package)
    from hydra import compose
    from hydra.errors import HydraException

    try:
        return compose(config_name=name)
    except HydraException as err:
        raise ModelConfigError(
            f"{source}: not a file and not a config bundled with the sam2 package ({str(err).splitlines()[0]})"
        ) from err


def _check_no_resolvers(node: Any, source: str, where: str = "") -> None:
    """Refuse resolver calls (``${oc.env:…}``, ``${oc.decode:…}``): they would bring environment values
    (keys, tokens) or decoded structures into the config. Plain references (``${model.d_model}``) stay."""
    if isinstance(node, dict):
        for key, value in node.items():
            _check_no_resolvers(value, source, f"{where}.{key}" if where else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_no_resolvers(value, source, f"{where}[{index}]")
    elif isinstance(node, str) and _RESOLVER_CALL.search(node):
        name = _RESOLVER_CALL.search(node).group(1)
        raise ModelConfigError(f"{source}: {where}: the resolver {name!r} is not allowed in a model config")


def check_config(node: Any, source: str, where: str = "") -> None:
    """Walk a resolved config (dicts, lists, scalars); raise ModelConfigError at the first key that would
    make hydra call something outside the allow-list, or that still holds an interpolation."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if key == "_target_":
                _check_target(value, path, source)
            elif key in REFUSED_HYDRA_KEYS:
                raise ModelConfigError(f"{source}: {path}: the hydra option {key} is not allowed in a model config")
            elif key in REFUSED_ARGUMENTS and value is not None:
                raise ModelConfigError(
                    f"{source}: {path}: loading weights from a config is not allowed "
                    "(give SAM2 weights as sam2_base / sam2_checkpoint)"
                )
            check_config(value, source, path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            check_config(value, source, f"{where}[{index}]")
    elif isinstance(node, str) and "${" in node:  # hydra would resolve it again when instantiating
        raise ModelConfigError(f"{source}: {where}: interpolation text {node[:80]!r} is not allowed")


def _check_target(target: Any, path: str, source: str) -> None:
    if not isinstance(target, str):
        raise ModelConfigError(f"{source}: {path}: a target must be a class name, not {type(target).__name__}")
    if not allowed_target(target):
        raise ModelConfigError(
            f"{source}: {path} = {target[:200]!r} is not allowed: only SAM2 model classes "
            f"(torch modules defined in {ALLOWED_PREFIX[:-1]}) may be instantiated"
        )


def allowed_target(target: str) -> bool:
    """Whether ``target`` names a torch.nn.Module subclass defined in ``sam2.modeling`` at exactly that
    dotted path (so ``sam2.modeling.sam2_base.torch.load`` and re-exported names do not pass). Only
    modules under ``sam2.modeling`` are ever imported to decide."""
    if not target.startswith(ALLOWED_PREFIX):
        return False
    parts = target.split(".")
    if not all(_NAME.match(part) for part in parts):
        return False
    module_name, name = ".".join(parts[:-1]), parts[-1]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False
    obj = getattr(module, name, None)
    from torch import nn

    return (
        isinstance(obj, type)
        and issubclass(obj, nn.Module)
        and obj.__module__ == module_name
        and obj.__qualname__ == name
    )


def instantiate_model(config: dict[str, Any]):
    """Instantiate ``config["model"]`` of a config :func:`load_config` returned (checked again here, so a
    config edited in between cannot slip through)."""
    from hydra.utils import instantiate

    check_config(config, _describe("(in memory)"))
    return instantiate(config["model"], _recursive_=True)
