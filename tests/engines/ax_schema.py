"""Run inside the Axolotl environment: the JSON schemas of the nested models that `axolotl config-schema` names (its
full schema fails on torch.dtype, so it prints names and types only), the deprecated keys, the keys each recipe's
plugins add (their input-args models), and each recipe put through Axolotl's own validate_config() as a single bf16
GPU would see it (plugins registered first, as `axolotl train` does).

    .venvs/axolotl/bin/python tests/engines/ax_schema.py '{"models": [...], "validate": [RECIPE, ...]}'
"""

import importlib
import json
import sys

import torch
import yaml
from axolotl.integrations.base import PluginManager
from axolotl.utils.config import prepare_plugins, validate_config
from axolotl.utils.dict import DictDefault
from axolotl.utils.schemas.config import AxolotlInputConfig

request = json.loads(sys.argv[1])
nested = {}
for path in request["models"]:
    module, name = path.rsplit(".", 1)
    model = getattr(importlib.import_module(module), name, None)
    if hasattr(model, "model_json_schema"):  # pydantic models only (enums are named too)
        try:
            nested[path] = model.model_json_schema()
        except Exception as exc:
            nested[path] = {"error": f"{type(exc).__name__}: {exc}"}
deprecated = {k: str(f.deprecated) for k, f in AxolotlInputConfig.model_fields.items() if f.deprecated}
gpu = {"bf16": True, "fp8": False, "n_gpu": 1, "n_node": 1, "compute_capability": "sm_90"}
env = {"torch_version": torch.__version__.split("+")[0]}
validation, plugin_keys = {}, {}
for recipe in request["validate"]:
    try:
        with open(recipe) as handle:
            cfg = DictDefault(yaml.safe_load(handle))
        prepare_plugins(cfg)
        keys = []
        for path in PluginManager.get_instance().get_input_args() if cfg.plugins else []:
            module, name = path.rsplit(".", 1)
            keys += list(getattr(importlib.import_module(module), name).model_fields)
        plugin_keys[recipe] = keys
        validate_config(cfg, capabilities=gpu, env_capabilities=env)
        validation[recipe] = "ok"
    except Exception as exc:
        validation[recipe] = f"{type(exc).__name__}: {exc}"
answer = {"nested": nested, "deprecated": deprecated, "validation": validation, "plugin_keys": plugin_keys}
print("AX_HELPER " + json.dumps(answer))
