"""Property-based tests: any content of a user file gives a parsed result or the package's own
error naming the file, never another exception (hypothesis)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from text4vis.config import Config, load_config, parse_override
from text4vis.data.annotations import VideoRecord, read_annotations
from text4vis.data.labels import parse_labels, read_label_file, read_labels
from text4vis.errors import Text4VisError

SETTINGS = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# Text that looks like the files (digits, separators, newlines, commas) plus anything at all.
_ALPHABET = st.sampled_from(list("0123456789 \t\n\r,#-.:abcxyz/_\"'é{}[]") + ["\x00", "\ufeff"])
_LIKELY = st.text(_ALPHABET, max_size=200)
_CONTENT = st.one_of(
    _LIKELY.map(lambda text: text.encode("utf-8")),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda text: text.encode("utf-8")),
)


# One scratch folder for the whole module, removed when the test process ends (each Hypothesis
# example gets its own subfolder; they once left thousands of folders in /tmp).
_SCRATCH = tempfile.TemporaryDirectory(prefix="t4v-hyp-")


def _write(content: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(dir=_SCRATCH.name))
    path = folder / name
    path.write_bytes(content)
    return path


def _own_error_naming(path: Path, call) -> object:
    try:
        return call()
    except Text4VisError as exc:
        assert path.name in str(exc), str(exc)
        return None


@SETTINGS
@given(content=_CONTENT, num_classes=st.one_of(st.none(), st.integers(1, 5)))
def test_list_files(content, num_classes):
    path = _write(content, "list.txt")
    records = _own_error_naming(path, lambda: read_annotations(path, num_classes=num_classes))
    if records is not None:
        assert records and all(isinstance(r, VideoRecord) for r in records)
        for record in records:
            assert record.path and not record.path.startswith("#")
            assert record.num_frames is None or record.num_frames >= 0
            assert record.label >= 0 and (num_classes is None or record.label < num_classes)


@SETTINGS
@given(content=_CONTENT)
def test_label_csv(content):
    path = _write(content, "labels.csv")
    names = _own_error_naming(path, lambda: read_labels(path))
    if names is not None:
        assert names and all(isinstance(n, str) and n.strip() for n in names)
        assert len(set(names)) == len(names)


@SETTINGS
@given(content=_CONTENT, suffix=st.sampled_from([".txt", ".csv"]))
def test_label_files_for_predict(content, suffix):
    path = _write(content, f"labels{suffix}")
    names = _own_error_naming(path, lambda: read_label_file(path))
    if names is not None:
        assert names and all(isinstance(n, str) and n for n in names)
    # the --labels value itself: a file name or names separated by commas
    names = _own_error_naming(path, lambda: parse_labels(str(path)))


@SETTINGS
@given(spec=st.text(max_size=60))
def test_labels_given_as_text(spec):
    try:
        names = parse_labels(spec)
    except FileNotFoundError as exc:
        assert spec in str(exc)
    except Text4VisError as exc:
        assert "--labels" in str(exc)
    else:
        assert all(name and name == name.strip() for name in names)


@SETTINGS
@given(content=_CONTENT)
def test_yaml_configs(content):
    path = _write(content, "config.yaml")
    cfg = _own_error_naming(path, lambda: load_config(path))
    assert cfg is None or isinstance(cfg, Config)


_KEYS = st.sampled_from(["train.lr", "data.num_segments", "model.arch", "train.betas",
                         "data.grayscale", "run.progress", "train", "nope.key", "", "train.lr.x"])  # fmt: skip


@SETTINGS
@given(key=_KEYS, value=st.text(max_size=40))
def test_set_values(key, value):
    text = f"{key}={value}"
    try:
        parse_override(text)
        load_config(None, [text])
    except Text4VisError as exc:
        assert key in str(exc) or "override" in str(exc), str(exc)
