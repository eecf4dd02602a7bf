"""What parnet-deploy writes and reads back: export and engine manifests (typed, validated),
their DAG, and the file rules (hashes, atomic directories). No PyTorch, no backends."""

from .dag import Dag
from .engines_manifest import (
                               BackendRecord,
                               BuildOptions,
                               DeviceRecord,
                               EngineIncompatibleError,
                               EnginesManifest,
                               is_engine_dir,
                               load_engines,
)
from .export_manifest import ExportManifest, Normalization, SubgraphSpec, TensorSpec, load_manifest
from .files import FileSpec, atomic_directory, hash_files, sha256_file, write_json

__all__ = ["BackendRecord", "BuildOptions", "Dag", "DeviceRecord", "EngineIncompatibleError", "EnginesManifest",
           "ExportManifest", "FileSpec", "Normalization", "SubgraphSpec", "TensorSpec", "atomic_directory",
           "hash_files", "is_engine_dir", "load_engines", "load_manifest", "sha256_file", "write_json"]
