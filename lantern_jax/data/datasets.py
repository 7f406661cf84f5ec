"""tfds builders (array_record, no TensorFlow) for the pipeline's datasets, and readers through grain.

    write_dataset("d_t", {"train": records}, data_dir)      # -> data_dir/d_t/1.0.0
    source = read_dataset("d_t", data_dir, "train")         # random access, decoded records
    ds = grain_dataset("d_t", data_dir, "train", seed=0)    # grain.MapDataset (shuffled if seed)

Datasets and their fields (text comes back as `str`, arrays as numpy):
- d_base: pair_id, job, member, truth (JSON text; truth "" when absent), fit_level ("" when unknown).
  `pair_records(pairs)` / `record_to_pair(record)` convert from / to `schema.Pair`.
- d_seed: pair_id, prompt, target (Assessment JSON), provenance (JSON text).
- d_t: pair_id, prompt, generated_text, token_ids [T] int32, topk_ids [T, k] int32 (student-vocab
  ids), topk_logprobs [T, k] float32, label_probs [3] float32 (fit levels in FIT_LEVELS order).
- d_cls: pair_id, text, label (index into FIT_LEVELS), soft_label [3] float32.
Dict-valued text fields (provenance, truth) may be passed as dicts: they are stored as JSON.

Files are written in record order (shuffling off) so datasets built from the same D_base line up.
Writing refuses to replace an existing build unless `overwrite=True`, and builds beside it first,
so a write that fails leaves the old build as it was. A split needs at least one record.

Reading checks the build before anything trains on it: a missing, empty, truncated or overwritten
file (or dataset_info.json) is one DataError line naming the file, and a record that can't be read
later (damage past the checked ends) is one naming the record.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from lantern_jax.data.schema import FIT_LEVELS, DataError, Pair

DATASET_VERSION = "1.0.0"
TEXT, INT_SEQ, INT_TOPK, FLOAT_TOPK, FLOAT3, LABEL = "text", "int[T]", "int[T,k]", "float[T,k]", "float[3]", "label"
FIELDS: dict[str, dict[str, str]] = {
    "d_base": {"pair_id": TEXT, "job": TEXT, "member": TEXT, "truth": TEXT, "fit_level": TEXT},
    "d_seed": {"pair_id": TEXT, "prompt": TEXT, "target": TEXT, "provenance": TEXT},
    "d_t": {"pair_id": TEXT, "prompt": TEXT, "generated_text": TEXT, "token_ids": INT_SEQ,
            "topk_ids": INT_TOPK, "topk_logprobs": FLOAT_TOPK, "label_probs": FLOAT3},
    "d_cls": {"pair_id": TEXT, "text": TEXT, "label": LABEL, "soft_label": FLOAT3},
}
DESCRIPTIONS = {
    "d_base": "LANTERN D_base: synthetic member-job pairs with latent truth.",
    "d_seed": "LANTERN D_seed: teacher assessments that passed the quality gates and human review.",
    "d_t": "LANTERN D_t: teacher generations with per-token top-k logprobs over the student vocabulary.",
    "d_cls": "LANTERN D_cls: classifier inputs with hard and soft fit-level labels.",
}


def _tfds():
    import tensorflow_datasets as tfds  # slow to import: on first use only
    return tfds


def _features(name: str, top_k: int):
    tfds = _tfds()
    kinds = {
        TEXT: lambda: tfds.features.Text(),
        INT_SEQ: lambda: tfds.features.Tensor(shape=(None,), dtype=np.int32),
        INT_TOPK: lambda: tfds.features.Tensor(shape=(None, top_k), dtype=np.int32),
        FLOAT_TOPK: lambda: tfds.features.Tensor(shape=(None, top_k), dtype=np.float32),
        FLOAT3: lambda: tfds.features.Tensor(shape=(len(FIT_LEVELS),), dtype=np.float32),
        LABEL: lambda: tfds.features.ClassLabel(names=list(FIT_LEVELS)),
    }
    return tfds.features.FeaturesDict({k: kinds[v]() for k, v in FIELDS[name].items()})


def _builder_class(name: str):
    """One GeneratorBasedBuilder per dataset, made on first use (tfds is imported lazily)."""
    if name in _BUILDERS:
        return _BUILDERS[name]
    tfds = _tfds()

    class Builder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version(DATASET_VERSION)
        RELEASE_NOTES = {DATASET_VERSION: "First release."}

        def __init__(self, *, splits: Mapping[str, list[dict]] | None = None, top_k: int = 1, **kwargs):
            self._splits, self._top_k = splits or {}, top_k
            super().__init__(**kwargs)

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, description=DESCRIPTIONS[name],
                                         features=_features(name, self._top_k), disable_shuffling=True)

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(records) for split, records in self._splits.items()}

        def _generate_examples(self, records):
            for i, record in enumerate(records):
                yield i, record

    Builder.name = name
    Builder.__name__ = Builder.__qualname__ = "".join(p.capitalize() for p in name.split("_"))
    # tfds looks for a builder's source file through `importlib_resources` when its module is a
    # dotted package path (a package we don't otherwise need); a bare module name makes it skip that.
    Builder.__module__ = f"lantern_{name}"
    _BUILDERS[name] = Builder
    return Builder


_BUILDERS: dict[str, type] = {}


def _check_name(name: str) -> None:
    if name not in FIELDS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(FIELDS)}")


def _encode(name: str, split: str, index: int, record: Mapping[str, Any], top_k: int) -> dict:
    """A record in tfds' types, or DataError naming dataset, split, record and field."""
    out = {}
    where = f"{name}/{split} record {index}"
    for field, kind in FIELDS[name].items():
        if field not in record:
            raise DataError(f"{where}: missing field '{field}'")
        value = record[field]
        if kind == TEXT:
            out[field] = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else \
                ("" if value is None else str(value))
        elif kind == LABEL:
            out[field] = FIT_LEVELS.index(value) if isinstance(value, str) and value in FIT_LEVELS else int(value)
        else:
            dtype = np.int32 if kind in (INT_SEQ, INT_TOPK) else np.float32
            arr = np.asarray(value, dtype=dtype)
            expected = {INT_SEQ: 1, INT_TOPK: 2, FLOAT_TOPK: 2, FLOAT3: 1}[kind]
            if arr.ndim != expected or (kind in (INT_TOPK, FLOAT_TOPK) and arr.shape[1] != top_k) or \
                    (kind == FLOAT3 and arr.shape[0] != len(FIT_LEVELS)):
                raise DataError(f"{where}: field '{field}' has shape {arr.shape}, expected {kind} with k={top_k}")
            out[field] = arr
    if name == "d_t" and not (len(out["token_ids"]) == len(out["topk_ids"]) == len(out["topk_logprobs"])):
        raise DataError(f"{where}: token_ids, topk_ids and topk_logprobs disagree on length T")
    return out


def pair_records(pairs: Iterable[Pair]) -> list[dict]:
    """D_base records from Pairs."""
    return [{"pair_id": p.pair_id, "job": p.job.to_dict(), "member": p.member.to_dict(),
             "truth": p.truth if p.truth is not None else "",
             "fit_level": (p.truth or {}).get("fit_level", "")} for p in pairs]


def record_to_pair(record: Mapping[str, Any]) -> Pair:
    """A Pair from a decoded d_base record."""
    truth = json.loads(record["truth"]) if record["truth"] else None
    return Pair.from_dict({"pair_id": record["pair_id"], "job": json.loads(record["job"]),
                           "member": json.loads(record["member"]), "truth": truth})


def dataset_path(name: str, data_dir: str | os.PathLike) -> pathlib.Path:
    return pathlib.Path(data_dir) / name / DATASET_VERSION


def write_dataset(name: str, splits: Mapping[str, Iterable[Mapping[str, Any]]] | Sequence[Any],
                  data_dir: str | os.PathLike, *, overwrite: bool = False) -> pathlib.Path:
    """Build dataset `name` with the given splits ({split: records}; a plain list is "train").
    d_base also accepts Pairs. Returns the build folder."""
    _check_name(name)
    if not isinstance(splits, Mapping):
        splits = {"train": splits}
    path = dataset_path(name, data_dir)
    if path.exists() and not overwrite:
        raise DataError(f"dataset {name!r} already exists at {path} (pass overwrite=True to replace it)")
    if not splits:
        raise DataError(f"dataset {name!r}: no splits to write")
    materialised = {}
    for split, records in splits.items():
        records = list(records)
        if not records:  # tfds can't finalize an empty split; say so before anything is written
            raise DataError(f"dataset {name!r}: split {split!r} has no records (a split needs at least one)")
        if name == "d_base" and isinstance(records[0], Pair):
            records = pair_records(records)
        materialised[split] = records
    top_k = 1
    if name == "d_t":
        first = next((r for rs in materialised.values() for r in rs), None)
        top_k = int(np.asarray(first["topk_ids"]).shape[-1]) if first is not None and "topk_ids" in first else 1
    encoded = {split: [_encode(name, split, i, r, top_k) for i, r in enumerate(records)]
               for split, records in materialised.items()}
    tfds = _tfds()
    tfds.display_progress_bar(False)
    os.makedirs(data_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{name}-writing-", dir=data_dir)
    try:
        builder = _builder_class(name)(data_dir=staging, splits=encoded, top_k=top_k, file_format="array_record")
        builder.download_and_prepare()
        if path.exists():  # overwrite: the old build goes only once the new one is complete
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        os.replace(dataset_path(name, staging), path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


class DecodedSource:
    """Random-access source over a split (grain-compatible): text as str, arrays as numpy."""

    def __init__(self, source, text_fields: Sequence[str], where: str = ""):
        self._source, self._text, self._where = source, tuple(text_fields), where

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            record = self._source[index]
        except (RuntimeError, ValueError, OSError) as e:  # array_record / Riegeli: damaged bytes
            raise DataError(f"{self._where}: record {index} can't be read ({_first_line(e)})") from None
        if not isinstance(record, Mapping) or any(v is None for v in record.values()):
            raise DataError(f"{self._where}: record {index} is damaged (it decodes to empty fields)")
        record = dict(record)
        for field in self._text:
            if isinstance(record.get(field), bytes):
                record[field] = record[field].decode("utf-8")
        return record

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"DecodedSource({self._source!r})"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def _check_files(split_info, where: str) -> None:
    """Each of the split's files opens as array_record and holds the records dataset_info.json
    counts; the first and last records read. Catches empty, truncated and overwritten files."""
    from array_record.python.array_record_module import ArrayRecordReader  # with tfds: first use only

    if split_info.num_examples == 0:
        raise DataError(f"{where}: the split is empty")
    for filepath, expected in zip(split_info.filepaths, split_info.shard_lengths):
        filepath = str(filepath)
        if not os.path.isfile(filepath):
            raise DataError(f"{filepath}: missing (dataset_info.json lists it for {where})")
        if os.path.getsize(filepath) == 0:
            raise DataError(f"{filepath}: empty file (0 bytes); the dataset must be written again")
        reader = None
        try:
            reader = ArrayRecordReader(filepath)
            found = reader.num_records()
            ends = reader.read([0, found - 1]) if found == expected else []
        except (RuntimeError, ValueError, OSError) as e:
            raise DataError(f"{filepath}: not a readable array_record file ({_first_line(e)})") from None
        finally:
            try:
                if reader is not None:
                    reader.close()
            except RuntimeError:  # a damaged file's reader raises its state again on close
                pass
        if found != expected:
            raise DataError(f"{filepath}: holds {found} records, dataset_info.json says {expected} "
                            "(the file is truncated or damaged)")
        if not all(ends):
            raise DataError(f"{filepath}: first or last record is empty (truncated?)")


def read_dataset(name: str, data_dir: str | os.PathLike, split: str) -> DecodedSource:
    """The split of a written dataset, read through `tfds.builder_from_directory` (no TensorFlow);
    its files are checked first (see the module docstring)."""
    _check_name(name)
    path = dataset_path(name, data_dir)
    if not (path / "dataset_info.json").is_file():
        raise DataError(f"dataset {name!r} not found at {path} (write it with datasets.write_dataset)")
    try:
        builder = _tfds().builder_from_directory(str(path))
        splits = builder.info.splits
    except Exception as e:  # a damaged dataset_info.json / features.json: protobuf, JSON, KeyError, ...
        raise DataError(f"{path}: dataset_info.json or features.json can't be read ({_first_line(e)})") from None
    if split not in splits:
        raise DataError(f"dataset {name!r} at {path} has no split {split!r}; it has {', '.join(sorted(splits))}")
    where = f"dataset {name!r} split {split!r} at {path}"
    _check_files(splits[split], where)
    sources = builder.as_data_source()
    text_fields = [f for f, kind in FIELDS[name].items() if kind == TEXT]
    return DecodedSource(sources[split], text_fields, where)


def grain_dataset(name: str, data_dir: str | os.PathLike, split: str, *, seed: int | None = None):
    """A grain MapDataset over the split, shuffled (per epoch, by seed) when seed is given."""
    import grain

    ds = grain.MapDataset.source(read_dataset(name, data_dir, split))
    return ds.shuffle(seed=seed) if seed is not None else ds
