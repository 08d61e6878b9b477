"""A stand-in for the ``tensorrt`` Python module: just what ``build_engines`` and ``plan_loading.deserialize_plan``
call, with a plugin registry that refuses what TensorRT documents it refuses. Tests only (TensorRT is not installable
here).

- ``IPluginRegistry::loadLibrary`` "will fail and return nullptr if any of the plugins are already registered"
  (NvInferRuntimeCommon.h, TensorRT 10.16 and 11.1): ``load_library`` returns None then.
- Deserialising a plan that carries a plugin library (``IBuilderConfig.plugins_to_serialize``) registers that
  library; when its creator is already registered the plan is refused ("Cannot register the library as plugin
  creator of ... exists already", reported against TensorRT 10). Without ``engine_host_code_allowed`` such a plan
  is refused too.
- The ONNX parser looks the creator of a custom-op node up in the registry; a graph with ``CompactedAttention``
  nodes does not parse without it.

A library's creators: ``CREATORS[path]`` (default: the one creator of libearn_plugins.so). Plans are JSON: what the
network used and which libraries were serialised into it.
"""

from __future__ import annotations

import json
import types

KEY = ("CompactedAttention", "1", "earn")
OP_MARKER = b"CompactedAttention"


def make_module(version: str = "10.16.0") -> types.ModuleType:
    """A fresh fake ``tensorrt`` module with its own (process-wide, like TensorRT's) plugin registry."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.CREATORS = {}
    trt.log = []  # what the fake "TensorRT" logged, errors included

    class PluginRegistry:
        def __init__(self):
            self.creators = {}  # key -> library path
            self.libraries = {}  # handle -> (path, keys)
            self.loads = []  # every load_library call: (path, ok)
            self._next = 1

        def get_creator(self, name, version, namespace=""):
            return ("creator",) + (name, version, namespace) if (name, version, namespace) in self.creators else None

        def load_library(self, path):
            keys = trt.CREATORS.get(str(path), [KEY])
            clash = [k for k in keys if k in self.creators]
            self.loads.append((str(path), not clash))
            if clash:
                trt.log.append(f"ERROR: loadLibrary {path}: plugin creator {clash[0]} already registered")
                return None
            handle = self._next
            self._next += 1
            self.libraries[handle] = (str(path), keys)
            for k in keys:
                self.creators[k] = str(path)
            return handle

        def deregister_library(self, handle):
            path, keys = self.libraries.pop(handle)
            for k in keys:
                self.creators.pop(k, None)

    registry = PluginRegistry()
    trt.REGISTRY = registry
    trt.get_plugin_registry = lambda: registry

    class Logger:
        WARNING = 2

        def __init__(self, severity=2):
            self.severity = severity

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 3

    class MemoryPoolType:
        WORKSPACE = 0

    class BuilderFlag:
        FP16 = 0

    class Network:
        def __init__(self):
            self.uses = []

    class OnnxParser:
        def __init__(self, network, logger):
            self.network, self.errors = network, []

        def parse_from_file(self, path):
            if OP_MARKER in open(path, "rb").read():
                if registry.get_creator(*KEY) is None:
                    self.errors.append(f"no importer registered for op CompactedAttention (plugin {KEY} not found)")
                    return False
                self.network.uses.append(KEY)
            return True

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    class TimingCache:
        def serialize(self):
            return b"cache"

    class IBuilderConfig:
        plugins_to_serialize = []  # class attribute: the builder checks hasattr(trt.IBuilderConfig, ...)

        def __init__(self):
            self.plugins_to_serialize = []

        def set_memory_pool_limit(self, pool, size):
            pass

        def set_flag(self, flag):
            pass

        def create_timing_cache(self, data):
            return TimingCache()

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

        def add_optimization_profile(self, profile):
            pass

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            pass

    class Builder:
        def __init__(self, logger):
            pass

        def get_plugin_registry(self):
            return registry

        def create_network(self, flags=0):
            return Network()

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return json.dumps({"uses": network.uses, "embedded": list(config.plugins_to_serialize)}).encode()

    class Engine:
        def __init__(self, plan):
            self.plan = plan

    class Runtime:
        def __init__(self, logger):
            self.engine_host_code_allowed = False

        def get_plugin_registry(self):
            return registry

        def deserialize_cuda_engine(self, data):
            plan = json.loads(bytes(data))
            if plan["embedded"] and not self.engine_host_code_allowed:
                trt.log.append("ERROR: the plan has host code and engine_host_code_allowed is false")
                return None
            for path in plan["embedded"]:
                if registry.load_library(path) is None:
                    trt.log.append(f"ERROR: Cannot register the library {path} as plugin creator exists already")
                    return None
            for key in plan["uses"]:
                if registry.get_creator(*key) is None:
                    trt.log.append(f"ERROR: plugin creator {key} not found")
                    return None
            return Engine(plan)

    for cls in (Logger, NetworkDefinitionCreationFlag, MemoryPoolType, BuilderFlag, OnnxParser, IBuilderConfig,
                Builder, Runtime):
        setattr(trt, cls.__name__, cls)
    return trt
